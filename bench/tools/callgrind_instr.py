#!/usr/bin/env python3
"""Per-instruction self costs of a callgrind dump made with --dump-instr=yes, worst first.

callgrind_annotate attributes costs to functions and source lines, and across greenlet switches its
call tree is meaningless; this script sums each event per instruction address instead and resolves
the top addresses with `addr2line -i` (inlined frames included), which is how the cache lines an
echo round trip touches were attributed in BENCHMARKS.md ("Fourth pass").

    GREENHUB_BENCH_CALLGRIND=1 GREENHUB_BENCH_ROUNDS=1 GREENHUB_BENCH_CONNS=1000 \
      GREENHUB_BENCH_SIZES=64 GREENHUB_BENCH_PEERS=greenhub-heap \
      GREENHUB_BENCH_VALGRIND_ARGS=--dump-instr=yes target/release/deps/echo-* --bench
    python3 bench/tools/callgrind_instr.py \
      target/release/callgrind-echo/greenhub-heap-1000x64-r0/callgrind.out.1-02 \
      --event D1mr --per <round trips in the window> --exe target/release/deps/echo-<hash>

The window dump of the server thread is `callgrind.out.1-02` (dump 1, thread 2).
"""
import argparse
import collections
import subprocess


def parse(path):
    events, positions = None, None
    costs = collections.defaultdict(lambda: None)
    addr = 0
    skip_next = False
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith("events:"):
                events = line.split()[1:]
                continue
            if line.startswith("positions:"):
                positions = line.split()[1:]
                continue
            if not line or line[0].isalpha():
                # "calls=" is followed by the call's inclusive cost line: not a self cost.
                skip_next = skip_next or line.startswith("calls=")
                continue
            if line[0] not in "0123456789+-*":
                continue
            parts = line.split()
            a = parts[0]
            if a == "*":
                pass
            elif a[0] in "+-":
                addr += int(a, 0)  # relative (subposition compression), hex or decimal
            else:
                addr = int(a, 0)
            rest = parts[len(positions):]
            if skip_next:
                skip_next = False
                continue
            v = [int(x) for x in rest] + [0] * (len(events) - len(rest))
            c = costs[addr]
            if c is None:
                costs[addr] = v
            else:
                for i, x in enumerate(v):
                    c[i] += x
    if positions is None or "instr" not in positions:
        raise SystemExit("no instruction positions: record with --dump-instr=yes")
    return events, costs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump")
    ap.add_argument("--event", default="D1mr")
    ap.add_argument("--per", type=float, default=1.0, help="divide by this (round trips)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--exe", help="the profiled binary, to name each address")
    args = ap.parse_args()
    events, costs = parse(args.dump)
    k = events.index(args.event)
    shown = [e for e in ("D1mr", "D1mw", "DLmr", "DLmw") if e in events]
    top = sorted(costs.items(), key=lambda kv: -kv[1][k])[: args.top]
    for a, v in top:
        if v[k] == 0:
            break
        cols = "  ".join("%s %6.3f" % (e, v[events.index(e)] / args.per) for e in shown)
        where = ""
        if args.exe:
            out = subprocess.run(
                ["addr2line", "-f", "-i", "-C", "-e", args.exe, hex(a)],
                capture_output=True, text=True,
            ).stdout.split("\n")
            # function/location pairs, innermost first
            where = " | ".join(
                "%s %s" % (out[i], out[i + 1].split("/")[-1]) for i in range(0, min(len(out) - 1, 6), 2)
            )
        print("%8x  %s  %s" % (a, cols, where))


if __name__ == "__main__":
    main()
