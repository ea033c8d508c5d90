#!/usr/bin/env bash
# Compares the working tree's server with Deno's built-in WebSocket server and
# deno_limit (the fastest plain-TypeScript echo on Deno's public API) in one
# run of the shared wsbench harness, so a change can be checked in minutes.
#
#   bench/compare.sh            full: every shape, a noise repeat (~15 min)
#   bench/compare.sh --quick    before a commit that touches the hot path:
#                               three shapes (small echo, 16 KiB echo,
#                               connect), short windows (~1.5 min)
#   bench/compare.sh [--quick] [wsbench options...] [extra servers...]
#
# Servers, in this order (ratios in the tables are to the first):
#   tsunagu       bench/echo_server.ts, default options
#   tsunagu_view  the same with binaryMessages "view" (binary messages lent to
#                 the handler; only the 16 KiB and 1 MiB shapes send binary,
#                 so it is measured there only)
#   deno_builtin  Deno.serve + Deno.upgradeWebSocket (Rust)
#   deno_limit    the plain-TypeScript ceiling on Deno
# Anything else on the command line goes to wsbench's compare.sh: --only
# SCEN,..., --wait-quiet SEC, or more servers such as `bun` or `c_limit`.
#
# The harness lives in ../shared/wsbench (its README explains every column);
# results go to ~/.cache/tsunagu-wsbench/results/<timestamp>/. The server is
# pinned to core 0 and the load generator to core 1; other load on the
# machine shows in the "other procs" column and makes a run repeat.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
wsbench="${WSBENCH_DIR:-$root/../shared/wsbench}"
if [ ! -x "$wsbench/compare.sh" ]; then
  echo "compare: wsbench not found at $wsbench (set WSBENCH_DIR)" >&2
  exit 2
fi
server="deno run -A $root/bench/echo_server.ts {PORT}"
quick=0
args=()   # wsbench options (and their values)
extra=()  # more servers, measured after ours
expect_value=0
for arg in "$@"; do
  if [ "$expect_value" = 1 ]; then
    args+=("$arg")
    expect_value=0
  elif [ "$arg" = "--quick" ]; then
    quick=1
  elif [[ "$arg" == --* ]]; then
    args+=("$arg")
    case "$arg" in
    --only | --noise | --retries | --max-foreign | --wait-quiet | --nice | --out) expect_value=1 ;;
    esac
  else
    extra+=("$arg")
  fi
done
view=(tsunagu_view="$server --binary-messages view")
if printf '%s\n' "${args[@]}" | grep -q -- '--only'; then
  # The caller chose the shapes: every server on each of them.
  exec "$wsbench/compare.sh" "${args[@]}" tsunagu="$server" "${view[@]}" \
    deno_builtin deno_limit "${extra[@]}"
fi
# The view variant only differs on binary traffic: the other shapes are run
# without it, then the binary ones with it.
if [ "$quick" = 1 ]; then
  mode=(--quick)
  plain=(--only echo_small_d1,connect)
  binary=(--only echo_medium)
else
  mode=()
  plain=()
  binary=(--only echo_medium,echo_large)
fi
"$wsbench/compare.sh" "${mode[@]}" "${plain[@]}" "${args[@]}" tsunagu="$server" \
  deno_builtin deno_limit "${extra[@]}"
exec "$wsbench/compare.sh" "${mode[@]}" "${binary[@]}" "${args[@]}" tsunagu="$server" \
  "${view[@]}" deno_builtin deno_limit "${extra[@]}"
