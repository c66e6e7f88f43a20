"""The lock (constraints.txt) installs on every Python the README names: 3.10 to 3.13."""
import re
import site
from importlib import metadata
from pathlib import Path

from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
LOWEST = "3.10.0"  # the lowest supported Python; scripts/lock resolves on it


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return dict((canonical(line.split("==")[0]), line.split("==")[1].strip())
                for line in lines if line and not line.startswith("#"))


def installed() -> list:
    """The distributions installed in this environment (not those vendored inside a package)."""
    return list(metadata.distributions(path=site.getsitepackages()))


def test_no_installed_distribution_excludes_the_lowest_supported_python():
    excluded = {}
    for distribution in installed():
        requires = distribution.metadata.get("Requires-Python")  # missing: a KeyError once importlib_metadata 9 is installed
        if requires and LOWEST not in SpecifierSet(requires):
            excluded[distribution.metadata["Name"]] = requires
    assert not excluded, f"these need a newer Python than {LOWEST}: regenerate the lock with scripts/lock"


def test_every_installed_distribution_is_pinned_at_the_installed_version():
    pinned = pins()
    unpinned = {}
    for distribution in installed():
        name = canonical(distribution.metadata["Name"])
        if name in ("onions", "onions-student", "pip") or pinned.get(name) == distribution.version:
            continue
        unpinned[name] = (distribution.version, pinned.get(name))
    assert not unpinned, "installed (version, pinned) that differ from constraints.txt: run scripts/setup"


def test_the_project_and_the_readme_name_the_same_lowest_python():
    assert 'requires-python = ">=3.10"' in (ROOT / "pyproject.toml").read_text()
    assert "Python 3.10 to 3.13" in (ROOT / "README.md").read_text()
