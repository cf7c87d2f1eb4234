#!/usr/bin/env bash
# Runs the client test matrix (tests/clients) against an already built server:
#   pytest over psql, psycopg2, psycopg 3, asyncpg, SQLAlchemy/pandas, Grafana's queries and
#   Arrow Flight SQL (ADBC, pyarrow.flight), then node:test over node-postgres.
# Each suite starts its own `weir serve` from $WEIR_BIN (default target/debug/weir) on free
# loopback ports. Install the clients first with scripts/setup.sh.
# Extra arguments go to pytest (for example -k asyncpg).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export WEIR_BIN="${WEIR_BIN:-target/debug/weir}"
if [ -z "${WEIR_TEST_PG:-}" ] && [ ! -x "$WEIR_BIN" ]; then
    echo "test-clients: $WEIR_BIN not found or not executable; build it (cargo build) or set WEIR_BIN" >&2
    exit 1
fi
if [ ! -x .venv/bin/pytest ] || [ ! -d tests/clients/node/node_modules/pg ]; then
    echo "test-clients: clients not installed; run scripts/setup.sh first" >&2
    exit 1
fi

status=0
echo "test-clients: pytest tests/clients"
.venv/bin/pytest -q -p no:cacheprovider tests/clients "$@" || status=1
echo "test-clients: node --test tests/clients/node"
node --test tests/clients/node/test.mjs || status=1
exit "$status"
