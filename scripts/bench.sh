#!/usr/bin/env bash
# Fan-out benchmarks of livepush against a hand-written axum `Sse` + `broadcast` server, with the
# load generator of ../shared/bench (see its README and BENCHMARKS.md).
#
#   scripts/bench.sh                 # everything: baseline, livepush in-memory, livepush + Redis, 19k row
#   QUICK=1 scripts/bench.sh         # fewer events per row (a smoke run, not figures to publish)
#   ROWS="baseline memory" scripts/bench.sh   # a subset of: baseline nodelay memory redis big
#   REPEAT=3 scripts/bench.sh        # each N = 100 / 1,000 / 10,000 row 3 times; the table shows
#                                    # the run with the median CPU per delivery, and the range
#
# Writes bench-results/results.jsonl (one loadgen JSON object per row, plus our own fields) and
# bench-results/table.md (the markdown table BENCHMARKS.md quotes). Server pinned to core 0
# (`taskset -c 0`), load generator to core 1; every row starts a fresh server process so the
# memory figures are per row. Redis rows start a private redis-server (no persistence) on a free
# port, pinned to core 0 with the server it serves.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOADGEN_DIR="${LOADGEN_DIR:-$ROOT/../shared/bench/loadgen}"
OUT="${OUT:-$ROOT/bench-results}"
ROWS="${ROWS:-baseline nodelay memory redis big}"
QUICK="${QUICK:-0}"
REPEAT="${REPEAT:-1}"
SERVER_CPU="${SERVER_CPU:-0}"
LOADGEN_CPU="${LOADGEN_CPU:-1}"

# 19,000 connections need 19,000 descriptors on each side (the hard limit here is 20,000).
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required" >&2; exit 2; }; }
need taskset
need python3
need cargo

echo "== building (release)" >&2
if [ -z "${LIVEPUSH_BIN:-}" ]; then
    cargo build --release --bin bench_server --bin baseline_server >&2
    LIVEPUSH_BIN="$ROOT/target/release/bench_server"
else # another livepush build of the bench protocol (e.g. while comparing a change)
    cargo build --release --bin baseline_server >&2
fi
cargo build --release --manifest-path "$LOADGEN_DIR/Cargo.toml" >&2
LOADGEN="$LOADGEN_DIR/target/release/loadgen"
BASELINE_BIN="$ROOT/target/release/baseline_server"

mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "error: nothing listens on port $1" >&2
    return 1
}

SERVER_PID=""
REDIS_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

start_server() { # kind (baseline|nodelay|memory|redis) port
    local kind=$1 port=$2 bin=$LIVEPUSH_BIN
    case $kind in baseline | nodelay) bin=$BASELINE_BIN ;; esac
    local env=(PORT="$port" RUST_LOG=warn LIVEPUSH_MAX_CONNECTIONS=20000
        LIVEPUSH_HEARTBEAT_SECS="${HEARTBEAT_SECS:-15}")
    # "nodelay": the baseline with TCP_NODELAY, as livepush::serve sets it (an informative row)
    [ "$kind" = nodelay ] && env+=(BASELINE_NODELAY=1)
    [ "$kind" = redis ] && env+=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT/")
    env "${env[@]}" taskset -c "$SERVER_CPU" "$bin" >"$OUT/server-$kind-$port.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$port"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

redis_clients() { # connected clients other than the redis-cli asking
    if [ -z "$REDIS_PID" ]; then echo null; return; fi
    local n
    n=$(redis-cli -p "$REDIS_PORT" info clients 2>/dev/null | tr -d '\r' | awk -F: '/^connected_clients:/{print $2}')
    echo $(( ${n:-1} - 1 ))
}

# run_row KIND ROWNAME LOADGEN-ARGS...: fresh server, one loadgen run, one JSON line in $RESULTS.
run_row() {
    local kind=$1 row=$2; shift 2
    local port; port=$(free_port)
    start_server "$kind" "$port"
    local before; before=$(redis_clients)
    local max=$before
    local tmp="$OUT/.row.json"
    taskset -c "$LOADGEN_CPU" "$LOADGEN" --base "http://127.0.0.1:$port" --server-pid "$SERVER_PID" \
        --label "$kind" --json "$@" >"$tmp" 2>"$OUT/loadgen-$row.err" &
    local lg=$!
    # sample the Redis connections the server holds while the subscribers are connected
    while kill -0 "$lg" 2>/dev/null; do
        local now; now=$(redis_clients)
        if [ "$now" != null ] && [ "$now" -gt "$max" ]; then max=$now; fi
        sleep 0.5
    done
    local status=0
    wait "$lg" || status=$?
    stop_server
    python3 - "$tmp" "$RESULTS" "$row" "$status" "$before" "$max" <<'EOF'
import json, sys
tmp, results, row, status, before, held = sys.argv[1:]
try:
    d = json.loads(open(tmp).read().strip().splitlines()[-1])
except Exception as e:
    d = {"label": "?", "error": f"no loadgen output ({e})"}
d["row"] = row
d["exit_status"] = int(status)
d["redis_clients_idle_server"] = None if before == "null" else int(before)
d["redis_clients_max"] = None if held == "null" else int(held)
open(results, "a").write(json.dumps(d) + "\n")
print(f"{row:28} {d.get('label')}: {d.get('deliveries_per_s', 0):,.0f} deliveries/s, "
      f"{d.get('server_cpu_us_per_delivery')} us/delivery, lost {d.get('lost')}, dup {d.get('duplicates')}, "
      f"{d.get('kib_per_conn')} KiB/conn, p99 {d.get('lat_us', {}).get('p99')} us", file=sys.stderr)
EOF
}

# Events per row: enough deliveries (~2M) for the CPU figure to be well above the 10 ms tick.
if [ "$QUICK" = 1 ]; then
    EV_100=1000; EV_1K=300; EV_10K=30; EV_LAT=200; EV_BIG=5; HOLD_BIG=2
else
    EV_100=10000; EV_1K=2000; EV_10K=200; EV_LAT=1000; EV_BIG=50; HOLD_BIG=20
fi

# rep_row KIND ROW ARGS...: run_row REPEAT times (rows ROW#1, ROW#2, ...); the table takes the
# run with the median CPU per delivery.
rep_row() {
    local kind=$1 row=$2; shift 2
    for k in $(seq "$REPEAT"); do run_row "$kind" "$row#$k" "$@"; done
}

throughput_rows() { # kind
    local kind=$1
    rep_row "$kind" "$kind-n100" --subscribers 100 --events $EV_100
    rep_row "$kind" "$kind-n1000" --subscribers 1000 --events $EV_1K
    rep_row "$kind" "$kind-n10000" --subscribers 10000 --events $EV_10K --hold-s 2
    # latency: a rate the server sustains, one publisher (ordered)
    rep_row "$kind" "$kind-n1000-rate100" --subscribers 1000 --events $EV_LAT --rate 100 --publish-concurrency 1
}

for what in $ROWS; do
    case $what in
    baseline | memory | nodelay) throughput_rows "$what" ;;
    redis)
        need redis-server
        need redis-cli
        REDIS_PORT=$(free_port)
        taskset -c "$SERVER_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
            >"$OUT/redis.log" 2>&1 &
        REDIS_PID=$!
        wait_port "$REDIS_PORT"
        run_row redis redis-n10 --subscribers 10 --events 1000
        throughput_rows redis
        kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=""
        ;;
    big)
        # 19,000 connections held for HOLD_BIG s with 5 s heartbeats (both servers), then EV_BIG
        # events to all.
        HEARTBEAT_SECS=5 rep_row memory memory-n19000 --subscribers 19000 --events $EV_BIG \
            --hold-s $HOLD_BIG --source-ips 4 --connect-concurrency 512 --timeout-s 300
        HEARTBEAT_SECS=5 rep_row baseline baseline-n19000 --subscribers 19000 --events $EV_BIG \
            --hold-s $HOLD_BIG --source-ips 4 --connect-concurrency 512 --timeout-s 300
        ;;
    *) echo "error: unknown row set $what (baseline nodelay memory redis big)" >&2; exit 2 ;;
    esac
done

python3 - "$RESULTS" "$OUT/table.md" <<'EOF'
import json, sys
from collections import OrderedDict
groups = OrderedDict()
for line in open(sys.argv[1]):
    if line.strip():
        d = json.loads(line)
        groups.setdefault(d["row"].split("#")[0], []).append(d)
def f(v, fmt="{:,.0f}"):
    return "–" if v is None else fmt.format(v)
def cpu(d):
    v = d.get("server_cpu_us_per_delivery")
    return float("inf") if v is None else v
out = ["| row | server | N | events | deliveries/s | publish req/s | p50 / p99 / max latency (ms) | lost | dup | KiB RSS / idle conn | server CPU µs / delivery | Redis conns (max during run) | heartbeats | ok |",
       "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
for row, runs in groups.items():
    runs.sort(key=cpu)
    d = runs[len(runs) // 2]  # the run with the median CPU per delivery
    lat = d.get("lat_us") or {}
    ms = lambda k: f(lat.get(k) / 1000 if lat.get(k) is not None else None, "{:.1f}")
    bad = [r for r in runs if r.get("exit_status") != 0 or r.get("timed_out")]
    ok = "yes" if not bad else f"NO ({bad[0].get('first_error') or bad[0].get('error') or 'timed out'})"
    cpu_txt = f(d.get("server_cpu_us_per_delivery"), "{:.2f}")
    if len(runs) > 1 and all(r.get("server_cpu_us_per_delivery") is not None for r in runs):
        cpu_txt += f" ({runs[0]['server_cpu_us_per_delivery']:.2f}–{runs[-1]['server_cpu_us_per_delivery']:.2f}, {len(runs)} runs)"
    lost = sum(r.get("lost") or 0 for r in runs)
    dups = sum(r.get("duplicates") or 0 for r in runs)
    out.append(
        f"| {row} | {d.get('label')} | {f(d.get('subscribers'))} | {f(d.get('events'))}"
        f"{' @' + str(d['rate']) + '/s' if d.get('rate') else ''} | {f(d.get('deliveries_per_s'))} | {f(d.get('publish_per_s'))} "
        f"| {ms('p50')} / {ms('p99')} / {ms('max')} | {f(lost)} | {f(dups)} "
        f"| {f(d.get('kib_per_conn'), '{:.1f}')} | {cpu_txt} "
        f"| {f(d.get('redis_clients_max'))} | {f(d.get('heartbeats'))} | {ok} |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
EOF
