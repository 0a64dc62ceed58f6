#!/usr/bin/env bash
# Fan-out benchmarks of livepush against a hand-written axum `Sse` + `broadcast` server, with the
# project's load generator, benchmarks/loadgen/ (see its README and BENCHMARKS.md).
#
#   scripts/bench.sh                      # the classic rows: baseline nodelay memory redis big
#   ROWS=issue17 scripts/bench.sh         # the issue-17 goals: baseline memory cores storm topics idle
#   QUICK=1 scripts/bench.sh              # small counts (a smoke run, not figures to publish)
#   ROWS="baseline memory" REPEAT=5 scripts/bench.sh
#
# Row sets (ROWS, any of):
#   baseline nodelay memory redis nats
#                                  N = 100 / 1,000 / 10,000 at full speed and N = 1,000 @100/s
#                                  (and redis N = 10), for each named server: hand-written baseline,
#                                  baseline with TCP_NODELAY, bench_server in-memory, bench_server
#                                  + Redis, bench_server + NATS JetStream (a private
#                                  `nats-server -js` with a file store in $OUT, pinned with the
#                                  server). Goal 1 (robust lead) is `baseline memory`.
#   idle (alias big)               19,000 idle connections held 20 s with 5 s heartbeats, then 50
#                                  events, both servers: kib_per_conn (goal 5, "memory" in issue 17;
#                                  the name `memory` already means the in-memory rows above).
#   storm                          10,000 subscribers with replay on (memory, Redis, NATS), all drop
#                                  and reconnect with Last-Event-ID at event 150 of 400 @100/s
#                                  (goal 3). STORM_KINDS="memory redis nats" picks the servers.
#   topics                         10,000 subscribers on 10,000 topics, publishes spread uniformly
#                                  (baseline, memory, Redis), then subscribe/unsubscribe churn at
#                                  CHURN_RATE/s for CHURN_S s with benchmarks/churn.rs (goal 4).
#   cores                          bench_server (in-memory) on 1 core vs 2 cores at N = 10,000 and
#                                  N = 1,000 @100/s (goal 2).
#   workers                        issue 29, goal 2: bench_server and the baseline on core 0 with
#                                  TOKIO_WORKER_THREADS=1 and with WORKERS_MANY (8), load generator
#                                  on core 1, at a fixed load one worker carries about half busy:
#                                  N = 10,000 at WORKERS_RATE (10) events/s, WORKERS_EVENTS (200).
#                                  More workers than cores exposes what the runtime spends on
#                                  wake-ups, steals and parking for the same work.
#   tls                            issue 29, goal 3: bench_server in-memory over plain HTTP/1.1,
#                                  TLS HTTP/1.1 and TLS h2 (kinds memory tlsh1 tlsh2, alternating;
#                                  a throw-away P-256 certificate made with openssl in $OUT; the
#                                  load generator does not verify it): TLS_N_IDLE (5,000) idle
#                                  connections then 50 events (kib_per_conn), and N = 1,000 ×
#                                  TLS_EVENTS (1,000) events (server CPU per delivery), TLS_REPEAT
#                                  (3) runs each.
#
# Comparisons ALTERNATE: for every row shape and every repetition k = 1..REPEAT, each server of
# the set runs once with the same arguments (baseline#k, memory#k, redis#k, then #k+1, ...), so
# whatever the machine does meanwhile spreads over all servers. The tables show the median of
# the repetitions and the range (min–max), and for each pair the median of the per-repetition
# ratios (livepush#k ÷ baseline#k).
#
# Settings (environment):
#   REPEAT=5        repetitions of every row (QUICK: 2); BIG_REPEAT=3 for the 19,000-connection rows
#   MAX_LOAD=0.5    the 1-minute load average must be at most this before the first row; the
#                   script waits up to IDLE_WAIT_S=180 s for it, then refuses (exit 3), or only
#                   warns with ALLOW_BUSY=1 (QUICK=1 implies ALLOW_BUSY=1). Load average is
#                   printed and recorded before and after every row.
#   SERVER_CPU=0 LOADGEN_CPU=1     pinning (taskset -c) of the server (and its private Redis) and
#                   of the load generator / churn client for every row but `cores`.
#   CORES_1_SERVER_CPU=0   CORES_1_LOADGEN_CPU=1     `cores`, 1-core rows
#   CORES_2_SERVER_CPU=0-1 CORES_2_LOADGEN_CPU=0-1   `cores`, 2-core rows. Default: the server may
#                   use both cores and the load generator shares them (this machine has only 2;
#                   the kernel balances, neither process is favoured). The multi-thread runtime
#                   sizes its workers from the affinity mask (1 worker with `-c 0`, 2 with `-c 0-1`).
#                   The 2-core deliveries/s is then bounded by the load generator (≈ 400k
#                   deliveries/s on one core): compare server CPU per delivery too.
#   MEMORY_ENV="K=V ..."           HOOK (goal 5): extra environment of bench_server in the `idle`
#                   rows (an allocator setting, a buffer size, ...); BASELINE_MEMORY_ENV likewise
#                   for the baseline. Empty by default: the default settings are the target.
#   STORM_REPLAY=1024              LIVEPUSH_REPLAY of the storm rows (≥ the 400 events + warm-ups).
#   CHURN_RATE=1000 CHURN_S=10 CHURN_HOLD_MS=1000    the churn rows (QUICK: 2 s).
#   The `topics` rows run the baseline with BASELINE_RING=64 (its broadcast ring per topic; the
#   default 4,096 slots are allocated with each topic, ≈ 220 KiB, which a server of one topic
#   per user would not keep). bench_server ignores the variable.
#   SHAPES="n10 n100 n1000 n10000 n1000-rate100"   the throughput shapes to run (default: these;
#                   n10 only with redis). Also `n10000-rate100` (N = 10,000 at 100 events/s,
#                   300 events: 1 M deliveries/s asked, more than one core here writes).
#                   Latency against fan-out width at 100k deliveries/s: `n1-rate100` (the floor),
#                   `n100-rate1000`, `n10000-rate10` (with n1000-rate100: issue 29, goal 1).
#   LIVEPUSH_BIN=path              another build of the bench protocol in place of bench_server.
#   ALT_BIN=path ALT2_BIN=path     kinds `alt` and `alt2` (name them in ROWS, e.g. ROWS="baseline
#                   memory alt"): other livepush builds (in-memory broker) alternating with the
#                   others, to compare a change with the code before it in one run (each paired
#                   with the baseline repetition by repetition).
#
# Writes bench-results/results.jsonl (one loadgen or churn JSON object per row, plus our own
# fields: row, set, kind, shape, rep, load1_before/after, cpus, redis_*) and
# bench-results/table.md (scripts/bench_table.py renders it; rerun that alone to redo the tables).
# Every row starts a fresh server process (and a fresh private redis-server --save '' on a free
# port for Redis rows, pinned with the server), so memory figures and Redis counters are per row.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOADGEN_DIR="${LOADGEN_DIR:-$ROOT/benchmarks/loadgen}"
OUT="${OUT:-$ROOT/bench-results}"
ROWS="${ROWS:-baseline nodelay memory redis big}"
SHAPES="${SHAPES:-n10 n100 n1000 n10000 n1000-rate100}"
[ "$ROWS" = issue17 ] && ROWS="baseline memory cores storm topics idle"
QUICK="${QUICK:-0}"
if [ "$QUICK" = 1 ]; then REPEAT="${REPEAT:-2}"; BIG_REPEAT="${BIG_REPEAT:-1}"; ALLOW_BUSY="${ALLOW_BUSY:-1}"; fi
REPEAT="${REPEAT:-5}"
BIG_REPEAT="${BIG_REPEAT:-3}"
ALLOW_BUSY="${ALLOW_BUSY:-0}"
MAX_LOAD="${MAX_LOAD:-0.5}"
IDLE_WAIT_S="${IDLE_WAIT_S:-180}"
SERVER_CPU="${SERVER_CPU:-0}"
LOADGEN_CPU="${LOADGEN_CPU:-1}"
CORES_1_SERVER_CPU="${CORES_1_SERVER_CPU:-0}"
CORES_1_LOADGEN_CPU="${CORES_1_LOADGEN_CPU:-1}"
CORES_2_SERVER_CPU="${CORES_2_SERVER_CPU:-0-1}"
CORES_2_LOADGEN_CPU="${CORES_2_LOADGEN_CPU:-0-1}"
MEMORY_ENV="${MEMORY_ENV:-}"
BASELINE_MEMORY_ENV="${BASELINE_MEMORY_ENV:-}"
STORM_REPLAY="${STORM_REPLAY:-1024}"
CHURN_RATE="${CHURN_RATE:-1000}"
CHURN_HOLD_MS="${CHURN_HOLD_MS:-1000}"
WORKERS_MANY="${WORKERS_MANY:-8}"
WORKERS_RATE="${WORKERS_RATE:-10}"
WORKERS_EVENTS="${WORKERS_EVENTS:-200}"

# 19,000 connections need 19,000 descriptors on each side (the hard limit here is 20,000).
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required" >&2; exit 2; }; }
need taskset
need python3
need cargo
case " $ROWS " in *" redis "* | *" storm "* | *" topics "*) need redis-server; need redis-cli ;; esac
case " $ROWS " in *" nats "* | *" storm "*) need nats-server ;; esac
STORM_KINDS="${STORM_KINDS:-memory redis nats}"

echo "== building (release)" >&2
if [ -z "${LIVEPUSH_BIN:-}" ]; then
    cargo build --release --bin bench_server --bin baseline_server --bin churn >&2
    LIVEPUSH_BIN="$ROOT/target/release/bench_server"
else # another livepush build of the bench protocol (e.g. while comparing a change)
    cargo build --release --bin baseline_server --bin churn >&2
fi
cargo build --release --manifest-path "$LOADGEN_DIR/Cargo.toml" >&2
LOADGEN="$LOADGEN_DIR/target/release/loadgen"
BASELINE_BIN="$ROOT/target/release/baseline_server"
CHURN_BIN="$ROOT/target/release/churn"

mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

load1() { cut -d' ' -f1 /proc/loadavg; }
above() { python3 -c "import sys; sys.exit(0 if float('$1') > float('$2') else 1)"; }

# Idle check: after the build, wait for the load to settle, then refuse (or warn).
waited=0
while above "$(load1)" "$MAX_LOAD" && [ "$waited" -lt "$IDLE_WAIT_S" ] && [ "$ALLOW_BUSY" != 1 ]; do
    [ "$waited" = 0 ] && echo "== load average $(load1) > MAX_LOAD=$MAX_LOAD: waiting up to ${IDLE_WAIT_S}s" >&2
    sleep 10; waited=$((waited + 10))
done
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
if above "$(load1)" "$MAX_LOAD"; then
    if [ "$ALLOW_BUSY" = 1 ]; then
        echo "WARNING: the machine is not idle (load average $LOAD_START > $MAX_LOAD): figures are from a BUSY machine" >&2
    else
        echo "error: the machine is not idle (load average $LOAD_START > MAX_LOAD=$MAX_LOAD); set ALLOW_BUSY=1 to run anyway" >&2
        exit 3
    fi
fi
echo "== load average at start: $LOAD_START" >&2

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
REDIS_PORT=""
NATS_PID=""
NATS_PORT=""
NATS_DIR=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
    stop_nats
}
trap cleanup EXIT

start_redis() { # cpus
    REDIS_PORT=$(free_port)
    taskset -c "$1" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        >"$OUT/redis-$REDIS_PORT.log" 2>&1 &
    REDIS_PID=$!
    wait_port "$REDIS_PORT"
}

stop_redis() {
    [ -n "$REDIS_PID" ] || return 0
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
    REDIS_PORT=""
}

start_nats() { # cpus
    NATS_PORT=$(free_port)
    NATS_DIR=$(mktemp -d "$OUT/nats-store.XXXXXX")
    taskset -c "$1" nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$NATS_DIR" \
        >"$OUT/nats-$NATS_PORT.log" 2>&1 &
    NATS_PID=$!
    wait_port "$NATS_PORT"
}

stop_nats() {
    if [ -n "$NATS_PID" ]; then kill "$NATS_PID" 2>/dev/null || true; wait "$NATS_PID" 2>/dev/null || true; fi
    if [ -n "$NATS_DIR" ]; then rm -rf "$NATS_DIR"; fi
    NATS_PID=""
    NATS_PORT=""
    NATS_DIR=""
}

rcli() { redis-cli -p "$REDIS_PORT" "$@" 2>/dev/null | tr -d '\r'; }

# redis_sample: "clients channels" now (clients other than the redis-cli asking; channels and
# shard channels with at least one subscriber).
redis_sample() {
    if [ -z "$REDIS_PID" ]; then echo "null null"; return; fi
    rcli info | awk -F: '/^connected_clients:/{c=$2-1} /^pubsub_channels:/{p+=$2} /^pubsub_shardchannels:/{p+=$2}
        END{print (c==""?"null":c), (p==""?"null":p)}'
}

# Server environment of a row: ROW_ENV (array) is added by the callers.
start_server() { # kind (baseline|nodelay|memory|redis|nats) port cpus
    local kind=$1 port=$2 cpus=$3 bin=$LIVEPUSH_BIN env_tls=()
    case $kind in
    baseline | nodelay) bin=$BASELINE_BIN ;;
    tlsh1 | tlsh2) env_tls=(LIVEPUSH_TLS_CERT="$OUT/tls-cert.pem" LIVEPUSH_TLS_KEY="$OUT/tls-key.pem") ;;
    alt) bin=${ALT_BIN:?ALT_BIN must name the build of kind alt} ;;
    alt2) bin=${ALT2_BIN:?ALT2_BIN must name the build of kind alt2} ;;
    esac
    local env=(PORT="$port" RUST_LOG=warn LIVEPUSH_MAX_CONNECTIONS=20000
        LIVEPUSH_HEARTBEAT_SECS="${HEARTBEAT_SECS:-15}")
    # "nodelay": the baseline with TCP_NODELAY, as livepush::serve sets it (an informative row)
    [ "$kind" = nodelay ] && env+=(BASELINE_NODELAY=1)
    [ "$kind" = redis ] && env+=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT/")
    [ "$kind" = nats ] && env+=(NATS_URL="nats://127.0.0.1:$NATS_PORT")
    env+=("${env_tls[@]}" "${ROW_ENV[@]}")
    env "${env[@]}" taskset -c "$cpus" "$bin" >"$OUT/server-$kind-$port.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$port"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

ROW_ENV=()
ROW_SERVER_CPU=""
ROW_LOADGEN_CPU=""

# run_row SET KIND SHAPE REP TOOL ARGS...: fresh (Redis and) server, one run of TOOL (loadgen or
# churn) pinned to ROW_LOADGEN_CPU, one JSON line in $RESULTS. Row name: KIND-SHAPE#REP.
run_row() {
    local set=$1 kind=$2 shape=$3 rep=$4 tool=$5; shift 5
    local row="$kind-$shape#$rep" scpu=${ROW_SERVER_CPU:-$SERVER_CPU} lcpu=${ROW_LOADGEN_CPU:-$LOADGEN_CPU}
    local l_before; l_before=$(load1)
    [ "$kind" = redis ] && start_redis "$scpu"
    [ "$kind" = nats ] && start_nats "$scpu"
    local port; port=$(free_port)
    start_server "$kind" "$port" "$scpu"
    local idle; idle=$(redis_sample)
    [ -n "$REDIS_PID" ] && rcli config resetstat >/dev/null
    local tmp="$OUT/.row.json" err="$OUT/$tool-${row/\#/-}.err" base="http://127.0.0.1:$port" transport=()
    case $kind in
    tlsh1) base="https://127.0.0.1:$port" ;;
    tlsh2) base="https://127.0.0.1:$port" transport=(--http2) ;;
    esac
    if [ "$tool" = churn ]; then
        local redis_arg=()
        [ -n "$REDIS_PID" ] && redis_arg=(--redis "127.0.0.1:$REDIS_PORT")
        taskset -c "$lcpu" "$CHURN_BIN" --base "http://127.0.0.1:$port" --server-pid "$SERVER_PID" \
            --label "$kind" "${redis_arg[@]}" "$@" >"$tmp" 2>"$err" &
    else
        taskset -c "$lcpu" "$LOADGEN" --base "$base" "${transport[@]}" --server-pid "$SERVER_PID" \
            --label "$kind" --json "$@" >"$tmp" 2>"$err" &
    fi
    local lg=$! max_clients=null max_channels=null
    # sample the Redis connections and channels the server holds while the subscribers are connected
    while kill -0 "$lg" 2>/dev/null; do
        read -r c p <<<"$(redis_sample)"
        if [ "$c" != null ] && { [ "$max_clients" = null ] || [ "$c" -gt "$max_clients" ]; }; then max_clients=$c; fi
        if [ "$p" != null ] && { [ "$max_channels" = null ] || [ "$p" -gt "$max_channels" ]; }; then max_channels=$p; fi
        sleep 0.5
    done
    local status=0
    wait "$lg" || status=$?
    local stats=""
    [ -n "$REDIS_PID" ] && stats=$(rcli info commandstats)
    stop_server
    stop_redis
    stop_nats
    ROW="$row" SET="$set" KIND="$kind" SHAPE="$shape" REP="$rep" STATUS="$status" \
        IDLE="$idle" MAXC="$max_clients" MAXP="$max_channels" STATS="$stats" \
        L0="$l_before" L1="$(load1)" SCPU="$scpu" LCPU="$lcpu" ENVS="${ROW_ENV[*]}" \
        python3 - "$tmp" "$RESULTS" <<'EOF'
import json, os, sys
tmp, results = sys.argv[1:]
e = os.environ
try:
    d = json.loads(open(tmp).read().strip().splitlines()[-1])
except Exception as ex:
    d = {"label": e["KIND"], "error": f"no output ({ex})"}
num = lambda v: None if v in ("", "null") else int(v)
idle_clients, _ = e["IDLE"].split()
d.update(row=e["ROW"], set=e["SET"], kind=e["KIND"], shape=e["SHAPE"], rep=int(e["REP"]),
         exit_status=int(e["STATUS"]), redis_clients_idle_server=num(idle_clients),
         redis_clients_max=num(e["MAXC"]), redis_channels_max=num(e["MAXP"]),
         load1_before=float(e["L0"]), load1_after=float(e["L1"]),
         server_cpus=e["SCPU"], loadgen_cpus=e["LCPU"], server_env=e["ENVS"] or None)
if e["STATS"]:
    calls = {}
    for line in e["STATS"].splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            calls[name] = int(rest.split(",")[0].split("=")[1])
    # ours: CONFIG RESETSTAT, the INFO samples and the INFO commandstats (Redis 7 names
    # subcommands "config|resetstat"; it also counts the commands a script runs, by name)
    for name in list(calls):
        if name.split("|")[0] in ("config", "info"):
            del calls[name]
    # the churn client reports its own (a difference of INFO commandstats): keep that one
    d.setdefault("redis_calls", sum(calls.values()))
    d.setdefault("redis_commands", calls)
open(results, "a").write(json.dumps(d) + "\n")
r2 = lambda v: None if v is None else round(v, 2)
storm = d.get("storm") or {}
extra = ""
if storm:
    extra = f", storm caught up {storm.get('caught_up')} p99 {storm.get('catchup_ms', {}).get('p99')} ms"
if "redis_calls" in d:
    extra += f", redis calls {d['redis_calls']} (channels max {d['redis_channels_max']})"
if "cycles" in d:
    print(f"{d['row']:32} churn: {d.get('ok')}/{d.get('cycles')} ok, {r2(d.get('server_cpu_us_per_cycle'))} us/cycle{extra}, "
          f"load {d['load1_before']}→{d['load1_after']}", file=sys.stderr)
else:
    print(f"{d['row']:32} {d.get('deliveries_per_s', 0):,.0f} deliveries/s, "
          f"{r2(d.get('server_cpu_us_per_delivery'))} us/delivery, lost {d.get('lost')}, dup {d.get('duplicates')}, "
          f"{r2(d.get('kib_per_conn'))} KiB/conn, p99 {(d.get('lat_us') or {}).get('p99')} us{extra}, "
          f"load {d['load1_before']}→{d['load1_after']}", file=sys.stderr)
EOF
}

# alternate SET "KIND..." SHAPE REPS ARGS...: for k in 1..REPS, every KIND once (same args).
alternate() {
    local set=$1 kinds=$2 shape=$3 reps=$4; shift 4
    for k in $(seq "$reps"); do
        for kind in $kinds; do run_row "$set" "$kind" "$shape" "$k" loadgen "$@"; done
    done
}

# Events per row: enough deliveries (≥ 2 M) for the CPU figure to be well above the 10 ms tick.
if [ "$QUICK" = 1 ]; then
    EV_100=1000; EV_1K=300; EV_10K=30; EV_LAT=200; EV_LAT10K=50; EV_BIG=5; HOLD_BIG=6; N_BIG=2000
    STORM=(--subscribers 1000 --events 100 --rate 100 --publish-concurrency 1 --storm-at 40 --timeout-s 60)
    N_TOPICS=1000; EV_TOPICS=2000; CHURN_S="${CHURN_S:-2}"
else
    EV_100=10000; EV_1K=2000; EV_10K=200; EV_LAT=1000; EV_LAT10K=300; EV_BIG=50; HOLD_BIG=20; N_BIG=19000
    STORM=(--subscribers 10000 --events 400 --rate 100 --publish-concurrency 1 --storm-at 150 --timeout-s 120)
    N_TOPICS=10000; EV_TOPICS=50000; CHURN_S="${CHURN_S:-10}"
fi

# The throughput kinds named in ROWS, in the order named; they alternate with each other.
KINDS=""
for what in $ROWS; do
    case $what in
    baseline | nodelay | memory | redis | nats | alt | alt2) KINDS="$KINDS $what" ;;
    idle | big | storm | topics | cores | workers | tls) ;;
    *) echo "error: unknown row set $what (baseline nodelay memory redis nats alt alt2 idle big storm topics cores workers tls; or ROWS=issue17)" >&2; exit 2 ;;
    esac
done

if [ -n "$KINDS" ]; then
    echo "== throughput rows, alternating:$KINDS" >&2
    shape() { case " $SHAPES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
    case " $KINDS " in *" redis "*) shape n10 && alternate throughput redis n10 "$REPEAT" --subscribers 10 --events 1000 ;; esac
    shape n100 && alternate throughput "$KINDS" n100 "$REPEAT" --subscribers 100 --events $EV_100
    shape n1000 && alternate throughput "$KINDS" n1000 "$REPEAT" --subscribers 1000 --events $EV_1K
    shape n10000 && alternate throughput "$KINDS" n10000 "$REPEAT" --subscribers 10000 --events $EV_10K --hold-s 2
    # latency: a rate the server sustains, one publisher (ordered)
    shape n1000-rate100 && alternate throughput "$KINDS" n1000-rate100 "$REPEAT" --subscribers 1000 --events $EV_LAT --rate 100 --publish-concurrency 1
    # 1 M deliveries/s asked: more than one core of this machine writes (not in the default set)
    shape n10000-rate100 && alternate throughput "$KINDS" n10000-rate100 "$REPEAT" --subscribers 10000 --events $EV_LAT10K --rate 100 --publish-concurrency 1 --hold-s 1
    # Latency against fan-out width at the same 100k deliveries/s (not in the default set): one
    # subscriber (the publish-to-delivery floor), 100 @1,000/s, 10,000 @10/s; with n1000-rate100
    # they show how an event's latency grows with the number of writes it takes (issue 29, goal 1).
    shape n1-rate100 && alternate throughput "$KINDS" n1-rate100 "$REPEAT" --subscribers 1 --events $EV_LAT --rate 100 --publish-concurrency 1
    shape n100-rate1000 && alternate throughput "$KINDS" n100-rate1000 "$REPEAT" --subscribers 100 --events $((EV_LAT * 10)) --rate 1000 --publish-concurrency 1
    shape n10000-rate10 && alternate throughput "$KINDS" n10000-rate10 "$REPEAT" --subscribers 10000 --events $((EV_LAT / 10)) --rate 10 --publish-concurrency 1 --hold-s 1
fi

for what in $ROWS; do
    case $what in
    cores)
        echo "== cores: 1 core (server $CORES_1_SERVER_CPU, loadgen $CORES_1_LOADGEN_CPU) vs 2 (server $CORES_2_SERVER_CPU, loadgen $CORES_2_LOADGEN_CPU)" >&2
        for shape in n10000 n1000-rate100; do
            for k in $(seq "$REPEAT"); do
                for c in 1 2; do
                    if [ $c = 1 ]; then ROW_SERVER_CPU=$CORES_1_SERVER_CPU ROW_LOADGEN_CPU=$CORES_1_LOADGEN_CPU
                    else ROW_SERVER_CPU=$CORES_2_SERVER_CPU ROW_LOADGEN_CPU=$CORES_2_LOADGEN_CPU; fi
                    if [ $shape = n10000 ]; then
                        run_row cores memory "${c}core-n10000" "$k" loadgen --subscribers 10000 --events $EV_10K --hold-s 2
                    else
                        run_row cores memory "${c}core-n1000-rate100" "$k" loadgen --subscribers 1000 --events $EV_LAT --rate 100 --publish-concurrency 1
                    fi
                done
            done
        done
        ROW_SERVER_CPU="" ROW_LOADGEN_CPU=""
        ;;
    workers)
        echo "== workers: 1 vs $WORKERS_MANY tokio workers on core $SERVER_CPU, N = 10,000 at $WORKERS_RATE events/s" >&2
        for k in $(seq "$REPEAT"); do
            for w in 1 "$WORKERS_MANY"; do
                ROW_ENV=(TOKIO_WORKER_THREADS="$w")
                for kind in baseline memory; do
                    run_row workers "$kind" "w$w-n10000-rate$WORKERS_RATE" "$k" loadgen --subscribers 10000 \
                        --events "$WORKERS_EVENTS" --rate "$WORKERS_RATE" --publish-concurrency 1 --hold-s 1
                done
            done
        done
        ROW_ENV=()
        ;;
    storm)
        echo "== storm (LIVEPUSH_REPLAY=$STORM_REPLAY): ${STORM[*]}" >&2
        ROW_ENV=(LIVEPUSH_REPLAY="$STORM_REPLAY")
        alternate storm "$STORM_KINDS" storm "$REPEAT" "${STORM[@]}"
        ROW_ENV=()
        ;;
    topics)
        echo "== topics: $N_TOPICS subscribers on $N_TOPICS topics, then churn at $CHURN_RATE/s for $CHURN_S s" >&2
        # The baseline with a 64-event ring per topic: tokio allocates the whole ring with the
        # topic (4,096 slots ≈ 220 KiB), which nobody writing one topic per user would keep.
        ROW_ENV=(BASELINE_RING=64)
        alternate topics "baseline memory redis" "topics$N_TOPICS" "$REPEAT" \
            --subscribers $N_TOPICS --topics $N_TOPICS --events $EV_TOPICS --timeout-s 180
        for k in $(seq "$REPEAT"); do
            for kind in baseline memory redis; do
                run_row churn "$kind" "churn$CHURN_RATE" "$k" churn --rate "$CHURN_RATE" --duration-s "$CHURN_S" \
                    --hold-ms "$CHURN_HOLD_MS"
            done
        done
        ROW_ENV=()
        ;;
    tls)
        TLS_N_IDLE="${TLS_N_IDLE:-5000}" TLS_EVENTS="${TLS_EVENTS:-1000}" TLS_REPEAT="${TLS_REPEAT:-3}"
        need openssl
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
            -keyout "$OUT/tls-key.pem" -out "$OUT/tls-cert.pem" 2>/dev/null
        echo "== tls: plain / TLS HTTP/1.1 / TLS h2, $TLS_N_IDLE idle and N = 1,000 x $TLS_EVENTS events" >&2
        alternate tls "memory tlsh1 tlsh2" "idle$TLS_N_IDLE" "$TLS_REPEAT" --subscribers "$TLS_N_IDLE" \
            --events 50 --hold-s 2 --connect-concurrency 256 --timeout-s 180
        alternate tls "memory tlsh1 tlsh2" n1000 "$TLS_REPEAT" --subscribers 1000 --events "$TLS_EVENTS"
        ;;
    idle | big)
        # 19,000 connections held HOLD_BIG s with 5 s heartbeats (both servers), then EV_BIG events
        # to all. MEMORY_ENV / BASELINE_MEMORY_ENV: the hook for goal 5 (see the header).
        echo "== idle: $N_BIG connections (MEMORY_ENV='$MEMORY_ENV', BASELINE_MEMORY_ENV='$BASELINE_MEMORY_ENV')" >&2
        for k in $(seq "$BIG_REPEAT"); do
            # shellcheck disable=SC2206 # word splitting of K=V pairs is the point
            ROW_ENV=($MEMORY_ENV)
            HEARTBEAT_SECS=5 run_row idle memory "n$N_BIG" "$k" loadgen --subscribers $N_BIG --events $EV_BIG \
                --hold-s $HOLD_BIG --source-ips 4 --connect-concurrency 512 --timeout-s 300
            # shellcheck disable=SC2206
            ROW_ENV=($BASELINE_MEMORY_ENV)
            HEARTBEAT_SECS=5 run_row idle baseline "n$N_BIG" "$k" loadgen --subscribers $N_BIG --events $EV_BIG \
                --hold-s $HOLD_BIG --source-ips 4 --connect-concurrency 512 --timeout-s 300
        done
        ROW_ENV=()
        ;;
    esac
done

LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "== load average at start: $LOAD_START; at end: $LOAD_END" >&2
LOAD_START="$LOAD_START" LOAD_END="$LOAD_END" QUICK="$QUICK" python3 "$ROOT/scripts/bench_table.py" "$RESULTS" "$OUT/table.md"
