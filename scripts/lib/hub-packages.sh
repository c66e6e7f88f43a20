# Which Debian packages the hub needs that this machine lacks: Node.js >= 18 with its npm (the
# proxy) and sudo (the spawner). Sourced by scripts/setup and scripts/hub; tests/test_setup_packages.py
# drives the decision with every combination.
#
# Only what is missing is asked for, never a package that is there: Debian's npm conflicts with NodeSource's
# nodejs (which brings its own npm), so asking apt for "nodejs npm sudo" together fails on a machine
# that has NodeSource's Node.js and lacks only sudo.

# hub_packages_decide NODE_MAJOR HAS_NPM HAS_SUDO NODEJS_DEB_VERSION
#   NODE_MAJOR: node's major version, empty when there is no node; HAS_NPM, HAS_SUDO: 1 or 0;
#   NODEJS_DEB_VERSION: the installed Debian package nodejs's version, empty when none.
# Prints "install PKG..." (possibly with nothing after it) or "error MESSAGE", one line.
hub_packages_decide() {
    local node_major=$1 has_npm=$2 has_sudo=$3 nodejs_deb=$4 packages=()
    if [ -n "$node_major" ] && [ "$node_major" -lt 18 ]; then
        echo "error Node.js $node_major is older than 18, which configurable-http-proxy needs: install Node.js 18 or later (Debian 12's nodejs, or NodeSource's)"
        return
    fi
    if [ -z "$node_major" ]; then
        if [ "$has_npm" = 1 ]; then packages+=(nodejs); else packages+=(nodejs npm); fi
    elif [ "$has_npm" != 1 ]; then
        case "$nodejs_deb" in
            *nodesource*)
                echo "error NodeSource's nodejs $nodejs_deb is installed without its npm, and Debian's npm conflicts with it: apt-get install --reinstall nodejs (NodeSource's package brings npm)"
                return ;;
            *) packages+=(npm) ;;
        esac
    fi
    [ "$has_sudo" = 1 ] || packages+=(sudo)
    echo "install ${packages[*]}"
}

# hub_packages_probe [sudo]: the decision for this machine (without "sudo", sudo is not asked for).
hub_packages_probe() {
    local node_major="" has_npm=0 has_sudo=1 nodejs_deb=""
    if command -v node >/dev/null; then
        node_major=$(node -e 'console.log(process.versions.node.split(".")[0])' 2>/dev/null || echo 0)
    fi
    command -v npm >/dev/null && has_npm=1
    if [ "${1:-}" = sudo ] && ! { command -v sudo && command -v visudo; } >/dev/null; then has_sudo=0; fi
    if dpkg-query -W -f='${Status}' nodejs 2>/dev/null | grep -q "ok installed"; then
        nodejs_deb=$(dpkg-query -W -f='${Version}' nodejs)
    fi
    hub_packages_decide "$node_major" "$has_npm" "$has_sudo" "$nodejs_deb"
}

# hub_packages_missing [sudo]: the packages this machine lacks, on one line (empty when none); or, when
# no package can help, the reason and its fix, with status 1.
hub_packages_missing() {
    local decision
    decision=$(hub_packages_probe "${1:-}")
    if [ "${decision%% *}" = error ]; then
        echo "${decision#error }"
        return 1
    fi
    decision=${decision#install}
    echo "${decision# }"
}

# hub_packages_install WHO [sudo]: install what is missing (as root), or stop with one line naming the
# problem and its fix. WHO names the caller in the messages.
hub_packages_install() {
    local who=$1 packages
    if ! packages=$(hub_packages_missing "${2:-}"); then
        echo "$who: $packages" >&2
        return 1
    fi
    [ -n "$packages" ] || return 0
    echo "$who: installing $packages for the hub (apt-get)" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null; }; then
        echo "$who: apt-get could not install $packages (the lines above say why): if apt names a conflict with" \
             "the installed nodejs, install Node.js 18 or later with its own npm (NodeSource's nodejs brings it)," \
             "then run this again" >&2
        return 1
    fi
}
