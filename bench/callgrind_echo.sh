#!/usr/bin/env bash
# Instructions, last-level and D1 cache misses per echo round trip, under callgrind's cache
# simulation, for the server thread only (the busiest thread file). Usage, from the repo root:
#   cargo bench -p greenhub-bench --bench echo --no-run
#   bash bench/callgrind_echo.sh "50 1000" greenhub-stack greenhub-heap tokio-ct mio-loop
# Each cell: GREENHUB_BENCH_SECS=2, 64 B messages, one round; round trips counted with warm-up.
set -euo pipefail
B=$(realpath "$(ls -t target/release/deps/echo-* | grep -v "\.d$" | head -1)")
conns_list=$1; shift
dir=$(mktemp -d)
for conns in $conns_list; do
  for peer in "$@"; do
    out=$(cd "$dir" && rm -f callgrind.out.* && GREENHUB_BENCH_PEERS=$peer GREENHUB_BENCH_CONNS=$conns \
      GREENHUB_BENCH_SIZES=64 GREENHUB_BENCH_SECS=2 GREENHUB_BENCH_ROUNDS=1 \
      valgrind --tool=callgrind --cache-sim=yes --separate-threads=yes "$B" --bench 2>&1)
    rt=$(echo "$out" | grep -o '([0-9]* rt with warm-up)' | grep -o '[0-9]*')
    best=$(for f in "$dir"/callgrind.out.*-*; do echo "$(grep -m1 '^summary' "$f" | awk '{print $2}') $f"; done | sort -n | tail -1 | cut -d' ' -f2)
    python3 - "$peer" "$conns" "$rt" "$(grep -m1 '^events' "$best")" "$(grep -m1 '^summary' "$best")" <<'PY'
import sys
peer, conns, rt, ev, sm = sys.argv[1:]
d = dict(zip(ev.split()[1:], map(int, sm.split()[1:])))
rt = int(rt)
ll = d.get('DLmr', 0) + d.get('DLmw', 0) + d.get('ILmr', 0)
d1 = d.get('D1mr', 0) + d.get('D1mw', 0)
print(f"{peer:15} conns={conns:5} round trips={rt:7} Ir/rt={d['Ir']/rt:6.0f} LL miss/rt={ll/rt:5.2f} D1 miss/rt={d1/rt:6.2f}")
PY
  done
done
rm -rf "$dir"
