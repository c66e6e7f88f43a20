"""The documentation: the site builds offline with warnings as errors, and the README's commands and links hold.

A broken cross-reference, a page left out of the table of contents or a missing include is a
Sphinx warning, so with -W it fails the build, and so this test.
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# one page per reader, under these names: other work adds to them
PAGES = ["index", "students", "instructors", "tas", "lms", "administrators", "security", "internals",
         "measurements", "changelog"]


def sphinx_build(source: Path, out: Path) -> subprocess.CompletedProcess:
    if shutil.which("sphinx-build", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("Sphinx is not installed: run ONIONS_TEST_TOOLS=1 bash scripts/setup (scripts/test does)")
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-b", "html", "-q",
                           str(source), str(out)], capture_output=True, text=True, timeout=300)


def test_the_site_builds_offline_with_warnings_as_errors(tmp_path):
    extensions = re.search(r"^extensions = \[(.*?)\]", (DOCS / "conf.py").read_text(), re.MULTILINE | re.DOTALL)
    assert "intersphinx" not in extensions.group(1), "no intersphinx: the build must work offline"
    result = sphinx_build(DOCS, tmp_path / "html")
    assert result.returncode == 0, result.stderr[-3000:]
    for page in PAGES:
        assert (tmp_path / "html" / f"{page}.html").exists(), page
    changelog = (tmp_path / "html" / "changelog.html").read_text()
    assert "Unreleased" in changelog, "docs/changelog.md includes ../CHANGELOG.md"


def test_a_broken_reference_or_a_page_outside_the_toctree_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("_build"))
    shutil.copy(ROOT / "CHANGELOG.md", tmp_path / "CHANGELOG.md")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")  # conf.py reads the version there
    (docs / "tas.md").write_text((docs / "tas.md").read_text() + "\nSee {ref}`no-such-label`.\n")
    (docs / "orphan.md").write_text("# A page nobody links\n")
    result = sphinx_build(docs, tmp_path / "html")
    assert result.returncode != 0
    assert "no-such-label" in result.stderr
    assert "orphan" in result.stderr and "toctree" in result.stderr


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def test_every_command_of_the_readmes_two_commands_exists():
    block = [line.strip() for line in readme_section("Two commands").splitlines() if line.startswith("    ")]
    commands = [line.split("#")[0].strip() for line in block]
    assert commands == ["bash scripts/demo", "bash scripts/test"], block
    for command in commands:
        script = ROOT / command.split()[1]
        assert script.is_file(), f"{command}: no {script}"
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, f"{script} does not parse"
    # what they name: CI runs the test command
    assert "bash scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_scripts_docs_has_help_and_refuses_a_bad_port():
    result = subprocess.run(["bash", str(ROOT / "scripts" / "docs"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--build-only" in result.stdout and "127.0.0.1" in result.stdout
    result = subprocess.run(["bash", str(ROOT / "scripts" / "docs"), "--port", "eighty"], capture_output=True, text=True)
    assert result.returncode == 2 and "--port" in result.stderr


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and MyST's heading anchors) give a heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_readmes_relative_links_reach_a_file_and_a_heading():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((?!https?:)([^)#]+)(?:#([^)]+))?\)", readme)
    assert {"docs/students.md", "docs/instructors.md", "docs/tas.md", "docs/lms.md", "docs/administrators.md",
            "docs/security.md", "docs/internals.md", "docs/measurements.md", "LICENSE", "CHANGELOG.md"} <= {
        path for path, _ in links}
    for path, anchor in links:
        target = ROOT / path
        assert target.is_file(), f"README links to {path}, which does not exist"
        if anchor:
            headings = re.findall(r"^#{1,6} (.+)$", target.read_text(), re.MULTILINE)
            assert anchor in {github_anchor(h) for h in headings}, f"README links to {path}#{anchor}: no such heading"


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "docs/tas.md#hand-back-feedback" in readme  # how to release feedback: one click away
