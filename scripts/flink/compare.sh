#!/usr/bin/env bash
# Weir and Flink side by side on the same bids: for each query, Flink SQL over
# DIR/bid.json (nexmark_flink.py) and then Weir over the same file (weir bench nexmark
# --json), one after the other on this machine; prints both and the ratios.
#
#   scripts/flink/compare.sh DIR [q0 q1 q5 q7 q8]
#
# DIR holds bid.json, and person.json and auction.json for q8 (e.g. from `weir gen
# --profile nexmark --out DIR --count 2000000`).
# Needs scripts/flink/setup.sh once and a release build (cargo build --release).
set -euo pipefail

DIR="${1:?usage: compare.sh DIR [queries…]}"
shift
QUERIES=("${@:-q0 q1 q5 q7 q8}")
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WEIR="${WEIR_BIN:-$HERE/../../target/release/weir}"
[ -x "$WEIR" ] || { echo "compare: no release build at $WEIR (cargo build --release)" >&2; exit 1; }
[ -f "$DIR/bid.json" ] || { echo "compare: $DIR/bid.json not found" >&2; exit 1; }

printf '%-4s %12s %14s %12s %14s %9s %9s\n' query flink_ev_s flink_ev_cpu_s weir_ev_s weir_ev_cpu_s ratio_s ratio_cpu
for q in ${QUERIES[*]}; do
    flink=$(python3 "$HERE/nexmark_flink.py" --events "$DIR" --query "$q" --parallelism 1 --json | tail -1)
    weir=$("$WEIR" bench nexmark --json "$DIR/bid.json" --query "$q" --runs 1 | grep '^RESULT')
    fs=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["events_per_s"])' "$flink")
    fc=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["events_per_cpu_s"])' "$flink")
    ws=$(sed -E 's/.*events_per_sec_wall=([0-9.]+).*/\1/' <<<"$weir")
    wc=$(sed -E 's/.*events_per_core=([0-9.]+).*/\1/' <<<"$weir")
    python3 - "$q" "$fs" "$fc" "$ws" "$wc" <<'PY'
import sys
q, fs, fc, ws, wc = sys.argv[1], *map(float, sys.argv[2:])
print(f"{q:<4} {fs:12,.0f} {fc:14,.0f} {ws:12,.0f} {wc:14,.0f} {ws / fs:9.1f} {wc / fc:9.1f}")
PY
done
