#!/usr/bin/env bash
# Presence at the issue's rate, in release (issue 25): three `chat` instances sharing one private
# Redis, member churn on one room spread over instances 1 and 2, a watcher on instance 0.
#
# Per rate in RATES (default "500 1000 2000"), on a fresh Redis and fresh instances, one JSON
# line on stdout:
# - churn (benchmarks/churn.rs): CHURN_S (10) seconds of new members opening
#   `/rooms/churn/events?user=…` at the rate (with QUIET=1 `…&presence=off`: members whose streams
#   get no member list and no joins or leaves, as in the issue's test; by default every member
#   watches, as chat's page does), each held HOLD_MS (1000) ms then closed (FIN); the
#   rate achieved, failures, time to response head, each chat's CPU per subscribe+unsubscribe
#   (`servers`, instance 0 first; until the leaves are done: the grace period + 2 s), the Redis
#   commands it caused (and per second, against `redis_idle_calls_per_s` measured before);
# - `watch` (scripts/presence_probe.py): the presence events the watcher on instance 0 got: the
#   most in any 1 s window and the mean per second (the issue's bound: about 10), and the joins and
#   leaves they named (each should be the cycles);
# - `members_left`: `GET /rooms/churn/presence` count on each instance once the watcher left too
#   (must be 0 everywhere); on stderr, each instance's warnings (lease lost, ...) counted.
# - `redis_cpu_us_per_cycle`: redis-server CPU (INFO cpu) per subscribe+unsubscribe.
# First (unless LATENCY_N=0), on fresh instances, one JSON line of join/leave latency across
# instances: LATENCY_N (100) members, one after another, join on instance 1, watched on instances
# 0 and 2 (presence_probe.py latency: leave latency is counted from the close, less the grace
# period).
#
# Needs redis-server, redis-cli, curl, python3. Builds `chat` and `churn` in release (NO_BUILD=1
# to skip). The grace period is chat's default, 3,000 ms (GRACE_MS). Loopback only; bounded by
# churn's limits (10,000/s, 100,000 connections).
#
#   scripts/bench_presence.sh | tee presence.jsonl
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RATES=${RATES:-"500 1000 2000"}
CHURN_S=${CHURN_S:-10}
HOLD_MS=${HOLD_MS:-1000}
GRACE_MS=${GRACE_MS:-3000}
LATENCY_N=${LATENCY_N:-100}
QUIET=${QUIET:-0}
if [ "$QUIET" = 1 ]; then
    CHURN_QUERY='&presence=off' LABEL=presence-quiet
else
    CHURN_QUERY='' LABEL=presence
fi
IDLE_S=${IDLE_S:-5}
CHAT=$ROOT/target/release/chat
CHURN=$ROOT/target/release/churn
PROBE=$ROOT/scripts/presence_probe.py

if [ "${NO_BUILD:-0}" != 1 ]; then
    # shellcheck source=toolchain.sh
    source scripts/toolchain.sh
    cargo build --release --bin chat --bin churn >&2
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

DIR=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
rcli() { redis-cli -p "$REDIS_PORT" "$@" | tr -d '\r'; }
redis_cpu() { rcli info cpu | awk -F: '/^used_cpu_(sys|user):/{s+=$2} END{printf "%.3f", s}'; }
redis_calls() { rcli info commandstats | awk -F'[=,:]' '/^cmdstat_/{s+=$3} END{print s}'; }

# start_cluster: a private Redis and three chat instances sharing it (BASES, CHATS, REDIS_PORT)
start_cluster() {
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
        >"$DIR/redis.log" 2>&1 &
    PIDS+=($!)
    until rcli ping >/dev/null 2>&1; do sleep 0.05; done
    BASES=()
    CHATS=()
    for i in 0 1 2; do
        local port
        port=$(free_port)
        PORT=$port REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" RUST_LOG=warn \
            LIVEPUSH_PRESENCE_GRACE_MS=$GRACE_MS "$CHAT" >"$DIR/chat-$i.log" 2>&1 &
        PIDS+=($!)
        CHATS+=($!)
        BASES+=("http://127.0.0.1:$port")
        until curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null; do sleep 0.1; done
    done
}

# stop_cluster LABEL: stops them; each chat's warnings (lease lost, ...) counted on stderr
stop_cluster() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
    for i in 0 1 2; do
        echo "# $1 chat-$i warnings: $(grep -c WARN "$DIR/chat-$i.log" || true)" >&2
        { grep WARN "$DIR/chat-$i.log" || true; } | sed -E 's/^[^ ]+ +//; s/topic=[^ ]+//' |
            sort | uniq -c | sort -rn | head -5 | sed "s/^/#   /" >&2
    done
}

echo "# $(date -u +%FT%TZ) $(uptime) $(git rev-parse --short HEAD)" >&2
if [ "$LATENCY_N" -gt 0 ]; then
    start_cluster
    python3 "$PROBE" latency "${BASES[1]}" "${BASES[0]}" "${BASES[2]}" --room latency \
        --n "$LATENCY_N" --grace-ms "$GRACE_MS" || true
    stop_cluster latency
fi

for rate in $RATES; do
    start_cluster
    watch_s=$((IDLE_S + CHURN_S + (HOLD_MS + GRACE_MS) / 1000 + 3))
    python3 "$PROBE" watch "${BASES[0]}" churn "$watch_s" >"$DIR/watch.json" &
    watcher=$!
    # idle Redis calls/s of the three instances with a watcher (leases, version reads)
    c0=$(redis_calls)
    sleep "$IDLE_S"
    c1=$(redis_calls)
    cpu0=$(redis_cpu)
    status=0
    "$CHURN" --base "${BASES[1]}" --base "${BASES[2]}" --server-pid "${CHATS[0]}" \
        --server-pid "${CHATS[1]}" --server-pid "${CHATS[2]}" --rate "$rate" \
        --duration-s "$CHURN_S" --hold-ms "$HOLD_MS" --settle-ms $((GRACE_MS + 2000)) \
        --path-template "/rooms/churn/events?user=c{i}$CHURN_QUERY" \
        --redis "127.0.0.1:$REDIS_PORT" --label "$LABEL-$rate" >"$DIR/churn.json" || status=$?
    cpu1=$(redis_cpu)
    wait "$watcher" || true
    sleep $(((GRACE_MS + 1500) / 1000)) # the watcher's own leave
    for i in 0 1 2; do
        curl -sf -m 10 "${BASES[$i]}/rooms/churn/presence" >"$DIR/presence-$i.json" ||
            echo '{"count": null}' >"$DIR/presence-$i.json"
    done
    STATUS=$status IDLE=$(awk -v a="$c0" -v b="$c1" -v t="$IDLE_S" 'BEGIN{printf "%.1f", (b - a - 1) / t}') \
        CPU0=$cpu0 CPU1=$cpu1 LOAD="$(uptime)" python3 - "$DIR" <<'EOF'
import json, os, sys
d = sys.argv[1]
e = os.environ
out = json.loads(open(f"{d}/churn.json").read() or "{}")
out["exit_status"] = int(e["STATUS"])
try:
    out["watch"] = json.load(open(f"{d}/watch.json"))
except ValueError:
    out["watch"] = {}
out["members_left"] = [json.load(open(f"{d}/presence-{i}.json"))["count"] for i in range(3)]
out["redis_idle_calls_per_s"] = float(e["IDLE"])
cycles = out.get("cycles") or 1
out["redis_cpu_us_per_cycle"] = round((float(e["CPU1"]) - float(e["CPU0"])) * 1e6 / cycles, 1)
out["uptime"] = e["LOAD"].strip()
print(json.dumps(out), flush=True)
w = out["watch"]
each = ", ".join(f"{s['cpu_us_per_cycle']:.0f}" for s in out.get("servers", []))
print(f"# {out.get('label')}: {out.get('achieved_rate', 0):.0f}/s achieved, {out.get('failed')} failed, "
      f"watcher max {w.get('max_events_in_1s')} events in 1 s, mean {w.get('mean_events_per_s')}/s, "
      f"{w.get('joins_named')} joins + {w.get('leaves_named')} leaves named, {out['members_left']} left; "
      f"chat CPU µs/cycle {each}; redis {out.get('redis_calls_per_s', 0):.0f} calls/s "
      f"(idle {out['redis_idle_calls_per_s']}), {out['redis_cpu_us_per_cycle']} µs/cycle", file=sys.stderr)
EOF
    stop_cluster "$LABEL-$rate"
done

echo "# $(date -u +%FT%TZ) $(uptime)" >&2
