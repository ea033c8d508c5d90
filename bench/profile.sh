#!/usr/bin/env bash
# Profiles bench/echo_server.ts under one wsbench load and prints the top
# functions by self time.
#
#   bench/profile.sh SCENARIO [echo_server args...]
#   SCENARIO: d1 | d16 | medium | large | connect | fanout
#
# The server is pinned to core 0 and loadgen to core 1, as compare.sh does.
# The V8 CPU profile is written to $OUT (default /tmp/tsunagu-prof/SCENARIO)
# and summarised by bench/prof_summary.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
scen="${1:?scenario}"
shift
B="${WSBENCH_BUILD:-$HOME/.cache/tsunagu-wsbench}"
PORT="${PORT:-18990}"
OUT="${OUT:-/tmp/tsunagu-prof/$scen}"
SECS="${SECS:-4}"
case "$scen" in
d1) args=(echo -c 100 -s 32 -d 1) ;;
d16) args=(echo -c 100 -s 32 -d 16) ;;
medium) args=(echo -c 10 -s 16k -d 1 -b) ;;
large) args=(echo -c 4 -s 1m -d 1 -b) ;;
connect) args=(connect -c 32) ;;
fanout) args=(fanout -n 1000 -s 64 --inflight 8) ;;
*) echo "unknown scenario $scen" >&2; exit 2 ;;
esac
rm -rf "$OUT"
mkdir -p "$OUT"
taskset -c 0 deno run -A --cpu-prof --cpu-prof-dir="$OUT" bench/echo_server.ts "$PORT" "$@" &
pid=$!
for _ in $(seq 50); do ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.1; done
taskset -c 1 "$B/bin/loadgen" "${args[@]}" -p "$PORT" -w 1 -t "$SECS" | head -1
kill -TERM "$pid"
wait "$pid" || true
deno run -A bench/prof_summary.ts "$OUT"/*.cpuprofile
