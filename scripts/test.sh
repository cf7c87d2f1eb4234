#!/usr/bin/env bash
# Runs every test: installs what they need (scripts/setup.sh), builds weir, runs the
# Rust unit and integration tests (sqllogictest over the wire, streaming suites and the
# Kafka source against a tansu broker, the PostgreSQL and Kafka sinks against a
# throw-away PostgreSQL cluster and that broker, Parquet on s3:// against moto, hostile
# input, weir check),
# then the client matrix (psql, psycopg2/3, asyncpg, SQLAlchemy, pandas, node-postgres,
# Grafana's queries) against a real server, then the wire fuzz targets for a bounded
# time (scripts/fuzz.sh: 60 s each).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export CARGO_TERM_COLOR=never
echo "== cargo build"
cargo build --locked --bins --tests
echo "== cargo test"
# The Kafka tests start this broker (tests/integration/harness.rs); setup.sh built it.
export WEIR_TANSU="${WEIR_TANSU:-${WEIR_CACHE:-$HOME/.cache/weir}/tansu-0.6.0/bin/tansu}"
# The PostgreSQL sink tests start a cluster with these binaries; setup.sh installed them.
WEIR_POSTGRES_BIN="${WEIR_POSTGRES_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
[ -x "$WEIR_POSTGRES_BIN/initdb" ] || { echo "test: no PostgreSQL server binaries (scripts/setup.sh installs them)" >&2; exit 1; }
export WEIR_POSTGRES_BIN
# The s3:// tests start this S3-compatible server; setup.sh installed it into the venv.
export WEIR_MOTO_SERVER="${WEIR_MOTO_SERVER:-$PWD/.venv/bin/moto_server}"
[ -x "$WEIR_MOTO_SERVER" ] || { echo "test: no moto_server at $WEIR_MOTO_SERVER (scripts/setup.sh installs it)" >&2; exit 1; }
cargo test --locked -- --test-threads=2
echo "== client matrix"
WEIR_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/weir" bash scripts/test-clients.sh
echo "== wire fuzzing"
bash scripts/fuzz.sh
