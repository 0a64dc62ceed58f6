#!/usr/bin/env bash
# One Redis vs a 3-master Redis Cluster under bench_server: 1,000 topics, one subscriber each,
# publishes spread over them (loadgen --topics). Prints, per run, loadgen's JSON and, per Redis
# node, the EVALSHA calls (INFO commandstats) and the Redis CPU seconds spent (INFO cpu,
# used_cpu_sys + used_cpu_user) during the run. BENCHMARKS.md, "Redis Cluster".
#
# Needs: target/release/bench_server (cargo build --release --bin bench_server), the load
# generator (cargo build --release --manifest-path benchmarks/loadgen/Cargo.toml),
# redis-server and redis-cli ≥ 7, taskset. EVENTS (default 20000) sets the publishes per run,
# RATE (default 0: as fast as the server takes) a fixed total publish rate, so that both runs
# can be compared at the same load (a busier connection batches more commands per read
# syscall). ONE_NODE (default 1) also runs a one-node cluster (every slot on one
# redis-server in cluster mode) between the two. IDLE (default 5) seconds of idle CPU are measured per node before each run (cron,
# cluster bus), and each run ends with every node's full INFO commandstats. CONCURRENCY (default
# 8) is loadgen's --publish-concurrency: more publishers in flight means more commands per Redis
# event-loop turn on every node.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER=${LIVEPUSH_BIN:-$ROOT/target/release/bench_server}
LOADGEN=${LOADGEN:-$ROOT/benchmarks/loadgen/target/release/loadgen}
EVENTS=${EVENTS:-20000}
RATE=${RATE:-0}
IDLE=${IDLE:-5}
CONCURRENCY=${CONCURRENCY:-8}
DIR=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

# a free port whose +10000 (cluster bus) is free too
port() {
    python3 - <<'EOF'
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p < 55000:
        b = socket.socket()
        try:
            b.bind(("127.0.0.1", p + 10000)); b.close(); s.close(); print(p); break
        except OSError:
            pass
    s.close()
EOF
}

redis() { # redis PORT [cluster]
    local p=$1 extra=()
    [ "${2:-}" = cluster ] && extra=(--cluster-enabled yes --cluster-config-file "nodes-$p.conf")
    redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
        "${extra[@]}" >"$DIR/redis-$p.log" 2>&1 &
    PIDS+=($!)
    until redis-cli -p "$p" ping >/dev/null 2>&1; do sleep 0.05; done
}

cpu() { redis-cli -p "$1" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/{s+=$2} END{printf "%.3f", s}'; }
evalsha() { redis-cli -p "$1" info commandstats | tr -d '\r' | awk -F'[=,:]' '/^cmdstat_evalsha:/{print $3}'; }

run() { # run LABEL URL NODE-PORTS...
    local label=$1 url=$2; shift 2
    local before=() idle=()
    for n in "$@"; do idle+=("$(cpu "$n")"); done
    sleep "$IDLE"
    local i=0
    for n in "$@"; do
        echo "{\"label\":\"$label\",\"node\":$n,\"idle_cpu_ms_per_s\":$(awk -v a="$(cpu "$n")" -v b="${idle[$i]}" -v t="$IDLE" 'BEGIN{printf "%.2f", (a-b)*1000/t}')}"
        i=$((i + 1))
    done
    for n in "$@"; do redis-cli -p "$n" config resetstat >/dev/null; before+=("$(cpu "$n")"); done
    local app; app=$(port)
    PORT=$app RUST_LOG=warn REDIS_URL=$url LIVEPUSH_MAX_CONNECTIONS=20000 \
        taskset -c 0 "$SERVER" >"$DIR/server-$label.log" 2>&1 &
    local spid=$!
    PIDS+=($spid)
    until curl -sf "http://127.0.0.1:$app/health/ready" >/dev/null; do sleep 0.1; done
    taskset -c 1 "$LOADGEN" --base "http://127.0.0.1:$app" --server-pid "$spid" \
        --subscribers 1000 --topics 1000 --events "$EVENTS" --publish-concurrency "$CONCURRENCY" --rate "$RATE" \
        --label "$label" --json
    kill "$spid"; wait "$spid" 2>/dev/null || true
    local i=0 total=0
    for n in "$@"; do
        local calls; calls=$(evalsha "$n"); calls=${calls:-0}
        local spent; spent=$(awk -v a="$(cpu "$n")" -v b="${before[$i]}" 'BEGIN{printf "%.3f", a-b}')
        echo "{\"label\":\"$label\",\"node\":$n,\"evalsha_calls\":$calls,\"redis_cpu_s\":$spent}"
        redis-cli -p "$n" info commandstats | tr -d '\r' | grep '^cmdstat_' | sed "s/^/# $label $n /"
        i=$((i + 1))
    done
}

# one Redis
single=$(port)
redis "$single"
run single-redis "redis://127.0.0.1:$single/" "$single"

# one Redis in cluster mode holding every slot: the cluster engine (partitions, SPUBLISH, cluster
# mode's checks) on one process, to tell its cost from that of running three processes
if [ "${ONE_NODE:-1}" = 1 ]; then
    one=$(port)
    redis "$one" cluster
    redis-cli -p "$one" cluster addslotsrange 0 16383 >/dev/null
    until redis-cli -p "$one" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
    run cluster-1 "redis+cluster://127.0.0.1:$one" "$one"
fi

# a 3-master cluster (no replicas: the replicas' CPU is not the question here)
nodes=()
for _ in 1 2 3; do p=$(port); redis "$p" cluster; nodes+=("$p"); done
redis-cli --cluster create "${nodes[@]/#/127.0.0.1:}" --cluster-yes >"$DIR/create.log"
until redis-cli -p "${nodes[0]}" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
sleep 1
seeds=$(printf '127.0.0.1:%s,' "${nodes[@]}")
run cluster-3 "redis+cluster://${seeds%,}" "${nodes[@]}"
