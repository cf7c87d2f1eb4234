#!/usr/bin/env bash
# Prepares a Debian 12 machine to build weir and run its tests (scripts/test.sh):
#   - the C toolchain and cmake that rdkafka's bundled librdkafka is built with,
#   - tansu, the Kafka-protocol broker of the streaming tests, built once into the cache
#     folder ${WEIR_CACHE:-~/.cache/weir} (cargo install; ~20-40 minutes on 2 cores),
#   - cargo-fuzz 0.13.2 for the fuzz targets (scripts/fuzz.sh), into the same cache folder,
#   - psql from Debian's postgresql-client, for the client matrix (scripts/test-clients.sh),
#     and openssl, which makes its TLS tests' certificate,
#   - Debian's postgresql server binaries (initdb, postgres), for the PostgreSQL sink tests,
#     which start a throw-away cluster of their own (no service is used),
#   - a Python venv at .venv/ with the pinned clients of tests/clients/requirements.txt
#     and moto_server, the S3-compatible server of the s3:// tests,
#   - node-postgres in tests/clients/node/ from its committed package-lock.json.
# Safe to run again: each step is skipped when what it would install is already there.
#
# scripts/setup.sh --prerequisites installs only the Debian packages needed to build weir
# (C toolchain, make, cmake, pkg-config, zlib and libcurl headers) and psql, then exits:
# no tansu, no cargo-fuzz, no venv, no node modules. The Rust toolchain comes from rustup.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQS="$ROOT/tests/clients/requirements.txt"
NODE_DIR="$ROOT/tests/clients/node"
PYTHON="${PYTHON:-python3}"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

mode=all
case "${1:-}" in
    "") ;;
    --prerequisites) mode=prerequisites ;;
    *) die "unknown argument '$1' (usage: scripts/setup.sh [--prerequisites])" ;;
esac

# Content hash of the given files, so a moved checkout keeps its stamps.
sha() { cat "$@" | sha256sum | cut -d' ' -f1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run: $*"
    fi
}

# --- Debian packages ---------------------------------------------------------
apt_pkgs=()
# rdkafka's cmake-build of librdkafka (and tansu's own C dependencies).
for pkg in build-essential cmake pkg-config zlib1g-dev libcurl4-openssl-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || apt_pkgs+=("$pkg")
done
command -v psql >/dev/null 2>&1 || apt_pkgs+=(postgresql-client)

install_apt_pkgs() {
    if [ "${#apt_pkgs[@]}" -gt 0 ]; then
        say "installing Debian packages: ${apt_pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update -qq
        as_root apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
    else
        say "Debian packages present (psql $(psql --version | awk '{print $3}'))"
    fi
}

if [ "$mode" = prerequisites ]; then
    install_apt_pkgs
    if command -v rustc >/dev/null 2>&1; then
        say "Rust toolchain: $(rustc --version) (weir needs 1.94 or later)"
    else
        say "no Rust toolchain found: install it with rustup (https://rustup.rs), 1.94 or later"
    fi
    say "done (prerequisites only)"
    exit 0
fi
# The PostgreSQL sink tests run initdb and postgres from /usr/lib/postgresql/*/bin.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_pkgs+=(postgresql)
# The client matrix's TLS tests make a self-signed certificate at test time.
command -v openssl >/dev/null 2>&1 || apt_pkgs+=(openssl)
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
# Debian's own python3 ships venv without ensurepip unless python3-venv is installed.
"$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_pkgs+=(python3-venv)
command -v node >/dev/null 2>&1 || apt_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_pkgs+=(npm)

install_apt_pkgs

# --- tansu: the Kafka broker of the streaming tests ----------------------------
TANSU_ROOT="${WEIR_CACHE:-$HOME/.cache/weir}/tansu-0.6.0"
if [ -x "$TANSU_ROOT/bin/tansu" ]; then
    say "tansu present ($TANSU_ROOT/bin/tansu)"
else
    command -v cargo >/dev/null 2>&1 || die "cargo not found (needed to build tansu)"
    say "building tansu 0.6.0 into $TANSU_ROOT: this takes ~20-40 minutes on 2 cores"
    cargo install tansu --version 0.6.0 --features dynostore,libsql --locked --root "$TANSU_ROOT"
fi

# --- cargo-fuzz: builds and runs the fuzz targets of fuzz/ (scripts/fuzz.sh) --------
CARGO_FUZZ_ROOT="${WEIR_CACHE:-$HOME/.cache/weir}/cargo-fuzz-0.13.2"
if [ -x "$CARGO_FUZZ_ROOT/bin/cargo-fuzz" ]; then
    say "cargo-fuzz present ($CARGO_FUZZ_ROOT/bin/cargo-fuzz)"
else
    say "building cargo-fuzz 0.13.2 into $CARGO_FUZZ_ROOT (~2 minutes)"
    cargo install cargo-fuzz --version 0.13.2 --locked --root "$CARGO_FUZZ_ROOT"
fi

# --- Python venv -------------------------------------------------------------
want_py="$(sha "$REQS")"
stamp_py="$VENV/.weir-requirements.sha256"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp_py" ] && [ "$(cat "$stamp_py")" = "$want_py" ]; then
    say "Python venv up to date ($VENV)"
else
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating Python venv at $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    say "installing Python clients from ${REQS#"$ROOT"/}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$REQS"
    printf '%s\n' "$want_py" >"$stamp_py"
fi

# --- node-postgres -----------------------------------------------------------
[ -f "$NODE_DIR/package-lock.json" ] || die "missing $NODE_DIR/package-lock.json"
want_node="$(sha "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json")"
stamp_node="$NODE_DIR/node_modules/.weir-lock.sha256"
if [ -f "$stamp_node" ] && [ "$(cat "$stamp_node")" = "$want_node" ]; then
    say "node modules up to date (${NODE_DIR#"$ROOT"/}/node_modules)"
else
    say "installing node modules in ${NODE_DIR#"$ROOT"/} (npm ci)"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    printf '%s\n' "$want_node" >"$stamp_node"
fi

say "done"
