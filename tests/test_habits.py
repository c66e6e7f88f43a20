"""The habits of a kept package: a linter that finds nothing, a version a user can ask for, a licence, a changelog."""
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from graders import __main__ as cli

ROOT = Path(__file__).resolve().parent.parent


def project_version() -> str:
    return re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)


def test_ruff_finds_nothing_in_the_code():
    if shutil.which("ruff", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("ruff is not installed: run ONIONS_TEST_TOOLS=1 bash scripts/setup (scripts/test does)")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "graders", "tests", "bench"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-1000:]


def test_ruff_is_configured_in_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "[tool.ruff]" in pyproject and "line-length = 120" in pyproject
    select = re.search(r"^select = \[(.*)\]", pyproject, re.MULTILINE).group(1)
    assert '"E"' in select and '"F"' in select


def test_python_m_graders_version_prints_the_projects_version():
    result = subprocess.run([sys.executable, "-m", "graders", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"onions {project_version()}"


def test_the_version_falls_back_to_pyproject_when_not_installed(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(cli.metadata, "version", not_installed)
    assert cli.version() == project_version()


def test_licence_and_changelog():
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("BSD 3-Clause License") and "Copyright (c) 2026, the onions developers" in licence
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert f"## [{project_version()}]" in changelog, "the current version has a section in CHANGELOG.md"
    readme = (ROOT / "README.md").read_text()
    assert "CC BY 4.0" in readme and "The Carpentries" in readme  # where the lesson's text comes from
