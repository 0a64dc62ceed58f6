#!/usr/bin/env bash
# Where a fan-out server's CPU goes under one load shape: `perf record` of the server process in
# the middle of a load-generator run, then the kernel/user split and the top symbols.
#
#   scripts/bench_profile.sh memory   --subscribers 1000 --events 1000 --rate 100 --publish-concurrency 1
#   scripts/bench_profile.sh baseline --subscribers 1000 --events 2000
#
# The first argument is the server (memory: target/release/bench_server, in-memory broker;
# baseline: target/release/baseline_server; or a path to another build of the bench protocol),
# the rest go to the load generator. Pinning as scripts/bench.sh: server on SERVER_CPU (0), load
# generator on LOADGEN_CPU (1). PROFILE_AFTER_S (2) after the load generator starts, the server is
# sampled for PROFILE_S (4) seconds (cpu-clock, call graphs). Run the release builds first
# (scripts/bench.sh builds them). Output: $OUT (bench-results/profile-<server>-<time>/) holds
# perf.data, report.txt (symbols, no children), loadgen.json and summary.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ $# -ge 1 ] || { sed -n 2,14p "$0"; exit 2; }
server=$1; shift
case $server in
memory) bin=target/release/bench_server ;;
baseline) bin=target/release/baseline_server ;;
*) bin=$server ;;
esac
command -v perf >/dev/null || { echo "error: perf is required" >&2; exit 2; }
[ -x "$bin" ] || { echo "error: $bin is not built (cargo build --release --bin bench_server --bin baseline_server)" >&2; exit 2; }
LOADGEN="${LOADGEN:-benchmarks/loadgen/target/release/loadgen}"
[ -x "$LOADGEN" ] || { echo "error: $LOADGEN is not built (cargo build --release --manifest-path benchmarks/loadgen/Cargo.toml)" >&2; exit 2; }
SERVER_CPU="${SERVER_CPU:-0}" LOADGEN_CPU="${LOADGEN_CPU:-1}"
PROFILE_AFTER_S="${PROFILE_AFTER_S:-2}" PROFILE_S="${PROFILE_S:-4}"
OUT="${OUT:-bench-results/profile-$(basename "$bin")-$(date +%H%M%S)}"
mkdir -p "$OUT"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env PORT="$port" RUST_LOG=warn LIVEPUSH_MAX_CONNECTIONS=20000 taskset -c "$SERVER_CPU" "$bin" \
    >"$OUT/server.log" 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null || true' EXIT
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done

load0=$(cut -d' ' -f1 /proc/loadavg)
taskset -c "$LOADGEN_CPU" "$LOADGEN" --base "http://127.0.0.1:$port" --server-pid "$spid" \
    --label "$server" --json "$@" >"$OUT/loadgen.json" 2>"$OUT/loadgen.err" &
lg=$!
sleep "$PROFILE_AFTER_S"
perf record -q -e cpu-clock -g -p "$spid" -o "$OUT/perf.data" -- sleep "$PROFILE_S" 2>"$OUT/perf.err"
wait "$lg" || true
load1=$(cut -d' ' -f1 /proc/loadavg)
# write system calls of the whole run (a response head and one per body write)
syscw=$(awk '/^syscw:/{print $2}' "/proc/$spid/io")

perf report -i "$OUT/perf.data" --no-children --sort sym -g none --stdio 2>/dev/null \
    | grep -E '^ +[0-9.]+%' >"$OUT/report.txt" || true
{
    echo "server: $bin; load generator: $*; load average $load0 → $load1"
    # [k] marks kernel symbols in perf's sym sort
    awk '{gsub("%","",$1); if ($2=="[k]") k+=$1; else u+=$1} END {printf "kernel %.1f %%, user %.1f %%\n", k, u}' "$OUT/report.txt"
    python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); l=d.get("lat_us") or {}; n=d.get("received") or 0; w=int(sys.argv[2]); print("deliveries/s %.0f, server CPU µs/delivery %.2f, loadgen CPU µs/delivery %.2f, p50/p99 %s/%s µs, lost %s, write calls %d over the whole run, warm-up included (%.3f per measured delivery)" % (d.get("deliveries_per_s",0), d.get("server_cpu_us_per_delivery") or 0, 1e6*(d.get("loadgen_cpu_s") or 0)/max(n,1), l.get("p50"), l.get("p99"), d.get("lost"), w, w/max(n,1)))' "$OUT/loadgen.json" "$syscw" || true
    echo "top symbols (self):"
    head -25 "$OUT/report.txt"
} | tee "$OUT/summary.txt"
