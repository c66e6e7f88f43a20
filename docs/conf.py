"""Sphinx configuration of the onions documentation (docs/). Build: bash scripts/docs --build-only.

Markdown pages (MyST), the PyData theme, as Jupyter's own projects build theirs. Everything is
offline: no intersphinx, no theme assets fetched at build time. The suite builds this site with
warnings as errors (tests/test_docs.py), so a broken reference fails a test.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

project = "onions"
author = "the onions developers"
copyright = "2026, the onions developers"
# one version, pyproject.toml's (the package may not be installed where the docs are built)
release = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
version = release

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links, as on GitHub

html_theme = "pydata_sphinx_theme"
html_title = f"onions {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "header_links_before_dropdown": 9,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"**": []}  # one page per reader: the top bar lists them all, no left column needed
html_show_sourcelink = False
