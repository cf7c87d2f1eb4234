#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer, AddressSanitizer) and runs
# each for a bounded time from the committed seeds in fuzz/corpus/<target>/:
#   WEIR_FUZZ_SECONDS   seconds per target (default 60)
#   WEIR_FUZZ_TARGETS   targets to run (default: all of fuzz/Cargo.toml)
#   WEIR_FUZZ_STRICT=1  every panic is a crash, also the ones the server contains
# Prints what libFuzzer reports per target (executions, exec/s, coverage, corpus) and
# the faults the server survives (a panic in pgwire's decoder closes one connection);
# exits non-zero on a crash, a hang (-timeout) or an allocation past -rss_limit_mb, and
# leaves the input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECS="${WEIR_FUZZ_SECONDS:-60}"
TARGETS="${WEIR_FUZZ_TARGETS:-startup messages bind_params refuse}"
CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export PATH="$CACHE/cargo-fuzz-0.13.2/bin:$PATH"
command -v cargo-fuzz >/dev/null 2>&1 || { echo "fuzz: cargo-fuzz missing (scripts/setup.sh installs it)" >&2; exit 1; }
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address …); this lets stable rustc take them.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$PWD/target"

echo "== fuzz build"
cargo fuzz build

LOGS="$PWD/target/fuzz-logs"
WORK="$PWD/target/fuzz-corpus"
mkdir -p "$LOGS"
status=0
for t in $TARGETS; do
    echo "== fuzz $t (${SECS}s)"
    # New inputs go to the work folder; the committed seeds stay as they are.
    mkdir -p "$WORK/$t"
    if cargo fuzz run "$t" "$WORK/$t" "corpus/$t" -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$LOGS/$t.log" 2>&1; then
        ok=1
    else
        ok=0
        status=1
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE' "$LOGS/$t.log" | tail -1 || true
    grep -E '^Done [0-9]+ runs' "$LOGS/$t.log" || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$LOGS/$t.log" || true
    grep -E '^weir-fuzz: contained' "$LOGS/$t.log" | sort -u || true
    if [ "$ok" = 0 ]; then
        echo "fuzz: $t FAILED; the log's end ($LOGS/$t.log):" >&2
        tail -40 "$LOGS/$t.log" >&2
    fi
done
exit "$status"
