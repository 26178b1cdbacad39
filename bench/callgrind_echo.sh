#!/usr/bin/env bash
# Instructions, system calls and cache misses per echo round trip under callgrind, over the
# measured window only. A wrapper for
#   GREENHUB_BENCH_CALLGRIND=1 cargo bench -p greenhub-bench --bench echo
# (bench/benches/echo.rs "Callgrind mode"; BENCHMARKS.md "Instructions per round trip"), which
# takes the connection counts and then the peers as arguments, e.g.
#   bash bench/callgrind_echo.sh "50 1000" greenhub-heap tokio-ct
# The other knobs are environment variables: GREENHUB_BENCH_SIZES, _SECS, _WARM_SECS, _ROUNDS, _LL.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
  conns=$1
  export GREENHUB_BENCH_CONNS=${conns// /,}
  shift
fi
if [ $# -ge 1 ]; then
  GREENHUB_BENCH_PEERS=$(IFS=,; echo "$*")
  export GREENHUB_BENCH_PEERS
fi
GREENHUB_BENCH_CALLGRIND=1 exec cargo bench -p greenhub-bench --bench echo
