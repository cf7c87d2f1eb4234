#!/usr/bin/env bash
# Installs PyFlink (the `apache-flink` package, which bundles Flink's jars and runs a
# local mini-cluster) into a venv under ${WEIR_CACHE:-~/.cache/weir}/flink-venv.
# Needs python3 (3.11) and Java 17 (`java` on PATH, or JAVA_HOME). Safe to run again.
set -euo pipefail

FLINK_VERSION="1.20.5"
PYTHON="${PYTHON:-python3}"
CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
VENV="$CACHE/flink-venv"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

say() { printf 'flink-setup: %s\n' "$*"; }
die() { printf 'flink-setup: error: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
command -v java >/dev/null 2>&1 || [ -n "${JAVA_HOME:-}" ] ||
    die "java not found (PyFlink needs Java 11 or 17 on PATH or in JAVA_HOME)"

installed() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("apache-flink") != sys.argv[1])' \
            "$FLINK_VERSION" 2>/dev/null
}

if installed; then
    say "apache-flink $FLINK_VERSION already installed"
else
    mkdir -p "$CACHE"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    # constraints.txt pins apache-flink's dependencies to the versions tested here.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c "$HERE/constraints.txt" "apache-flink==$FLINK_VERSION"
    installed || die "apache-flink $FLINK_VERSION did not install into $VENV"
    say "installed apache-flink $FLINK_VERSION"
fi

say "venv:   $VENV"
say "python: $VENV/bin/python"
say "run:    $VENV/bin/python $HERE/nexmark_flink.py --events DIR --query q0"
