#!/usr/bin/env bash
# The cost of the `otel` feature per delivery (BENCHMARKS.md, "Trace propagation"): the criterion
# group `fanout_cpu` of livepush/benches/hot_paths.rs (one publish read by N = 100 and N = 1,000
# in-process SSE streams, in this thread's CPU time; in a request span of which the SDK samples
# 1 %, and outside any span) built without and with `--features otel`, run alternately PAIRS
# times (default 5; the first mode of each pair alternates too), each run stamped with `uptime`.
# Prints per case the median and range of CPU per delivery in each mode and of the paired
# on ÷ off ratio; the raw criterion lines go to target/bench_otel/<UTC time>.txt.
# About 5 minutes once built; QUICK=1 (2 pairs, 1 s per case) checks that it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=toolchain.sh
source scripts/toolchain.sh
pairs="${PAIRS:-5}"
warm="${WARM_UP_SECS:-2}"
measure="${MEASURE_SECS:-4}"
if [ -n "${QUICK:-}" ]; then
  pairs=2 warm=0.5 measure=1
fi
target="${CARGO_TARGET_DIR:-target}"
out="$target/bench_otel"
mkdir -p "$out"
log="$out/$(date -u +%Y-%m-%dT%H%M%SZ).txt"

# The bench binary of one build (no run): the executable cargo reports.
bench_bin() {
  cargo bench -p livepush --bench hot_paths "$@" --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
exe = [m["executable"] for m in map(json.loads, sys.stdin)
       if m.get("reason") == "compiler-artifact" and m.get("executable")
       and m["target"]["name"] == "hot_paths"]
print(exe[-1])'
}
cargo bench -p livepush --bench hot_paths --no-run >&2
cargo bench -p livepush --bench hot_paths --features otel --no-run >&2
# Copies: building one mode can replace the other's executable under the same name.
cp "$(bench_bin)" "$out/hot_paths-off"
cp "$(bench_bin --features otel)" "$out/hot_paths-on"

run() { # mode pair
  echo "--- $1 pair $2 $(date -u +%T) load: $(cut -d' ' -f1-5 /proc/loadavg)" | tee -a "$log" >&2
  # A criterion home per mode: no comparison of one build's run with the other's.
  CRITERION_HOME="$out/criterion-$1" "$out/hot_paths-$1" --bench '^fanout_cpu/' \
    --warm-up-time "$warm" --measurement-time "$measure" --noplot 2>&1 |
    grep -E '^fanout_cpu/|time:|^otel:' | tee -a "$log" >&2
  echo "=== end $1 pair $2 $(date -u +%T) load: $(cut -d' ' -f1-5 /proc/loadavg)" | tee -a "$log" >&2
}

echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')," \
  "$(nproc) cores, pairs=$pairs warm=${warm}s measure=${measure}s" | tee "$log" >&2
for pair in $(seq "$pairs"); do
  if [ $((pair % 2)) -eq 1 ]; then run off "$pair"; run on "$pair"; else run on "$pair"; run off "$pair"; fi
done

python3 - "$log" <<'EOF'
import re, statistics, sys

runs = []  # (mode, pair, {case: ns per publish})
for line in open(sys.argv[1]):
    if m := re.match(r"--- (\w+) pair (\d+)", line):
        runs.append((m[1], int(m[2]), {}))
        continue
    # the case's name, and its time on the same line or the next
    if m := re.match(r"(fanout_cpu/\S+)", line):
        case = m[1]
    if m := re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line):
        value, unit = float(m[1]), m[2]
        runs[-1][2][case] = value * {"ns": 1, "µs": 1e3, "ms": 1e6}[unit]

def subscribers(case):
    return int(case.rsplit("/", 1)[1])

cases = sorted({c for _, _, r in runs for c in r}, key=lambda c: (subscribers(c), c))
print(f"CPU per delivery (ns), median [min-max] of {len({p for _, p, _ in runs})} pairs; "
      "on/off: paired ratio")
print(f"{'case':28} {'off':>22} {'on':>22} {'on/off':>24}")
fmt = lambda xs, f: f"{f(statistics.median(xs))} [{f(min(xs))}-{f(max(xs))}]"
for case in cases:
    n = subscribers(case)
    per = {mode: {p: r[case] / n for m, p, r in runs if m == mode and case in r}
           for mode in ("off", "on")}
    paired = [per["on"][p] / per["off"][p] for p in per["on"] if p in per["off"]]
    ns = lambda x: f"{x:.1f}"
    print(f"{case:28} {fmt(list(per['off'].values()), ns):>22} "
          f"{fmt(list(per['on'].values()), ns):>22} {fmt(paired, lambda x: f'{x:.3f}'):>24}")
print(f"raw: {sys.argv[1]}")
EOF
