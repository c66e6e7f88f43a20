"""What scripts/setup and scripts/hub ask apt for, for every machine they may meet (issue 29):
only what is missing, never Debian's npm beside NodeSource's nodejs."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "scripts" / "lib" / "hub-packages.sh"
NODESOURCE = "20.20.2-1nodesource1+repack1"
DEBIAN = "18.19.0+dfsg-6~deb12u2"


def decide(node_major, has_npm, has_sudo, nodejs_deb):
    result = subprocess.run(
        ["bash", "-c", f'. "{LIB}"; hub_packages_decide "$@"', "decide",
         node_major, str(int(has_npm)), str(int(has_sudo)), nodejs_deb],
        capture_output=True, text=True, check=True)
    assert result.stdout.count("\n") == 1 and not result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("node_major, has_npm, has_sudo, nodejs_deb, expected", [
    # this image: NodeSource's Node.js 20 with its npm, no sudo -> sudo alone
    ("20", True, False, NODESOURCE, "install sudo"),
    ("20", True, True, NODESOURCE, "install"),
    # Debian's Node.js with Debian's npm
    ("18", True, False, DEBIAN, "install sudo"),
    ("18", True, True, DEBIAN, "install"),
    # Debian's nodejs without npm: Debian's npm goes with it
    ("18", False, True, DEBIAN, "install npm"),
    ("18", False, False, DEBIAN, "install npm sudo"),
    # a Node.js not from a package (a tarball in /usr/local) with its npm
    ("22", True, False, "", "install sudo"),
    # neither node nor npm: Debian's pair
    ("", False, False, "", "install nodejs npm sudo"),
    ("", False, True, "", "install nodejs npm"),
    # an npm without node
    ("", True, True, "", "install nodejs"),
])
def test_only_what_is_missing_is_installed(node_major, has_npm, has_sudo, nodejs_deb, expected):
    assert decide(node_major, has_npm, has_sudo, nodejs_deb) == expected


def test_debian_npm_is_never_asked_for_beside_nodesource_nodejs():
    decision = decide("20", False, False, NODESOURCE)
    assert decision.startswith("error ") and "apt-get install --reinstall nodejs" in decision


@pytest.mark.parametrize("node_major", ["12", "16"])
def test_an_old_node_is_refused_with_the_fix(node_major):
    decision = decide(node_major, True, True, DEBIAN)
    assert decision == (f"error Node.js {node_major} is older than 18, which configurable-http-proxy needs: "
                        "install Node.js 18 or later (Debian 12's nodejs, or NodeSource's)")


def test_this_machine_after_setup_needs_nothing():
    """scripts/test ran scripts/setup with ONIONS_TEST_TOOLS=1: Node.js, npm and sudo are all here
    (as root; an ordinary account's setup only notes what is missing)."""
    if os.geteuid() != 0:
        pytest.skip("only root's setup installs the hub's packages")
    result = subprocess.run(["bash", "-c", f'. "{LIB}"; hub_packages_probe sudo; hub_packages_missing sudo'],
                            capture_output=True, text=True, check=True)
    assert result.stdout == "install \n\n"
