#!/usr/bin/env bash
# Recovery figures of livepush with a Redis broker, for BENCHMARKS.md:
#
#  1. Redis restart -> ready: a private redis-server is SIGKILLed and started again on the same
#     port while bench_server holds one SSE subscriber; the figure is the time from the first PONG
#     of the new redis-server to the first 200 of bench_server's `GET /health/ready`.
#  2. Sentinel failover -> delivery: master + replica + three sentinels; the master is SIGKILLed
#     while events are published every 50 ms; the figures are the time from the kill until a
#     sentinel names the replica as master (Sentinel's own part), and until the first event
#     published after the kill reaches the SSE subscriber (livepush's part is the difference),
#     plus whether every event published after the kill arrived or a `livepush.reset` came
#     before the next one ("no silent gap").
#
#   scripts/recovery.sh                    # 10 restarts, 3 failovers
#   RESTARTS=3 FAILOVERS=1 scripts/recovery.sh
#   PHASES=restart scripts/recovery.sh     # one phase only (restart | failover | "restart failover")
#   BUILD=0 scripts/recovery.sh            # use target/release/bench_server as it is
#   KEEP_LOGS=1 scripts/recovery.sh        # keep the temp dir (server logs, SSE captures)
#
# Prints Markdown tables and the raw samples on stdout, progress on stderr. Everything listens on
# 127.0.0.1, on ports below the ephemeral range that nothing uses. bench_server runs with
# RUST_LOG=livepush=debug; its log is kept in the temp dir (always kept when the script fails).
#
# Clocks: timestamps are bash's $EPOCHREALTIME (microseconds, the same clock as `date +%s%N`,
# without forking a process per reading). Every SSE line is stamped as it arrives (a `read` loop
# on curl's output), so delivery times are exact; readiness and promotion are polled, so their
# poll period (reported) is part of those figures.
set -euo pipefail
export LC_ALL=C # `.` as the decimal separator of $EPOCHREALTIME and of awk

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RESTARTS="${RESTARTS:-10}"
FAILOVERS="${FAILOVERS:-3}"
PHASES="${PHASES:-restart failover}"
BUILD="${BUILD:-1}"
KEEP_LOGS="${KEEP_LOGS:-0}"
BIN="$ROOT/target/release/bench_server"

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required" >&2; exit 2; }; }
need redis-server
need redis-cli
need curl
need ss
need awk
[[ "$RESTARTS" =~ ^[0-9]+$ && "$FAILOVERS" =~ ^[0-9]+$ ]] || { echo "error: RESTARTS and FAILOVERS must be numbers" >&2; exit 2; }
[ -n "${EPOCHREALTIME:-}" ] || { echo "error: bash 5 or newer is needed (\$EPOCHREALTIME)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/livepush-recovery.XXXXXX")"
PIDS=() # every process this script started and has not reaped yet

log() { printf '%s\n' "$*" >&2; }

# Whether a process this script started still runs (a zombie, not reaped yet, does not).
alive() { # pid
    local s
    { read -r s </proc/"$1"/stat; } 2>/dev/null || return 1
    s="${s##*) }"
    [ "${s%% *}" != Z ]
}

forget_pid() { # pid
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# Stops one process this script started: SIGTERM, up to 5 s, then SIGKILL; reaps it.
stop_pid() { # pid
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# SIGKILL (the fault being measured) and reap.
kill9_pid() { # pid
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget_pid "$1"
}

cleanup() {
    local rc=$? pid i alive
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do
        alive=0
        for pid in "${PIDS[@]}"; do alive "$pid" && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$rc" = 0 ] && [ "$KEEP_LOGS" != 1 ]; then
        rm -rf "$WORK"
    else
        log "logs kept in $WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() { log "error: $*"; exit 1; }

# NOW = the wall clock in nanoseconds (no fork).
now_ns() { local t="$EPOCHREALTIME"; NOW=$(( ${t%.*} * 1000000000 + 10#${t#*.} * 1000 )); }
ms() { awk -v d="$1" 'BEGIN { printf "%.1f", d / 1e6 }'; } # nanoseconds -> "12.3"

# A port below the ephemeral range (so no outgoing connection takes it while a server we restart
# is down) that no socket uses now, and that this script has not handed out yet.
PORT_LO=20000
PORT_HI=$(( $(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768) - 1 ))
(( PORT_HI > PORT_LO + 1000 )) || { PORT_LO=10000; PORT_HI=19999; }
GIVEN=" "
PORT=0
pick_port() { # sets PORT
    local i p
    for ((i = 0; i < 500; i++)); do
        p=$(( PORT_LO + RANDOM % (PORT_HI - PORT_LO) ))
        [[ "$GIVEN" == *" $p "* ]] && continue
        ss -Htan "sport = :$p" 2>/dev/null | grep -q . && continue
        GIVEN+="$p "
        PORT=$p
        return 0
    done
    die "no free port found in $PORT_LO-$PORT_HI"
}

http_code() { # url  -> prints the status, 000 when nothing answers
    curl -s -o /dev/null -m 1 -w '%{http_code}' "$1" 2>/dev/null || true
}

redis_ping() { # port -> PONG or nothing
    redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null || true
}

# Waits until `url` answers `code`, polling every `interval` s, at most `secs` s.
# Sets HIT_NS (the moment it did) and POLLS; returns 1 on time-out.
wait_code() { # url code secs interval
    local url="$1" want="$2" deadline i max
    now_ns; deadline=$(( NOW + $3 * 1000000000 ))
    max=$(awk -v s="$3" -v i="$4" 'BEGIN { printf "%d", s / i + 10 }')
    POLLS=0
    for ((i = 0; i < max; i++)); do
        POLLS=$((POLLS + 1))
        if [ "$(http_code "$url")" = "$want" ]; then now_ns; HIT_NS=$NOW; return 0; fi
        now_ns; (( NOW < deadline )) || return 1
        sleep "$4"
    done
    return 1
}

# Starts a redis-server (no persistence, loopback only) in the foreground of a background job.
# Sets STARTED_PID.
start_redis() { # port dir logfile [more redis-server args...]
    local port="$1" dir="$2" logf="$3"
    shift 3
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
        --logfile "" "$@" >>"$logf" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

wait_pong() { # port secs
    local i max=$(( $2 * 50 ))
    for ((i = 0; i < max; i++)); do
        [ "$(redis_ping "$1")" = PONG ] && return 0
        sleep 0.02
    done
    return 1
}

start_bench_server() { # http_port redis_url logfile  -> sets STARTED_PID
    PORT="$1" HOST=127.0.0.1 REDIS_URL="$2" LIVEPUSH_REPLAY=1000 RUST_LOG=livepush=debug \
        "$BIN" >"$3" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

# Every line of stdin, prefixed with its arrival time in microseconds since the epoch.
stamp_lines() {
    local line
    while IFS= read -r line; do printf '%s %s\n' "${EPOCHREALTIME/./}" "$line"; done
}

# An SSE subscriber of topic bench whose lines land stamped in `file`. Sets STARTED_PID (curl).
start_subscriber() { # http_port file max_secs
    curl -sN -m "$3" "http://127.0.0.1:$1/events?topic=bench" 2>/dev/null > >(stamp_lines >"$2") &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

publish() { # http_port seq  -> prints the status
    curl -s -o /dev/null -m 2 -w '%{http_code}' -X POST -H 'content-type: application/json' \
        -d "{\"seq\":$2}" "http://127.0.0.1:$1/publish" 2>/dev/null || true
}

# The arrival stamp (µs) of the event `{"seq":N}` in a stamped SSE capture, or nothing.
arrival_us() { # file seq
    awk -v want="data: {\"seq\":$2}" '{ s = $1; sub(/^[0-9]+ /, "") } $0 == want { print s; exit }' "$1"
}

wait_arrival() { # file seq secs  -> sets ARRIVAL_US; returns 1 on time-out
    local i max=$(( $3 * 50 ))
    for ((i = 0; i < max; i++)); do
        ARRIVAL_US=$(arrival_us "$1" "$2")
        [ -n "$ARRIVAL_US" ] && return 0
        sleep 0.02
    done
    return 1
}

# The time (ns) of the first line of bench_server's log that contains `text` and is stamped
# after `after_ns` (tracing's RFC 3339 UTC stamps, microseconds), or nothing.
log_time_after() { # logfile text after_ns
    local ts rest n
    grep -F -- "$2" "$1" 2>/dev/null | while read -r ts rest; do
        n=$(date -u -d "$ts" +%s%N 2>/dev/null) || continue
        if (( n > $3 )); then echo "$n"; break; fi
    done || true
}

stats() { # numbers... -> "median max min"
    (( $# > 0 )) || { echo "- - -"; return 0; }
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "- - -"; exit }
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        printf "%.1f %.1f %.1f\n", m, a[NR], a[1] }'
}

# ---------------------------------------------------------------------------------------------
log "== machine"
LOAD_BEFORE="$(uptime)"
log "$LOAD_BEFORE"
REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if git diff --quiet HEAD -- livepush livepush-macros examples Cargo.toml Cargo.lock 2>/dev/null; then
    TREE="the code under livepush/, livepush-macros/, examples/ is that of HEAD"
else
    TREE="WARNING: livepush/, livepush-macros/ or examples/ differ from HEAD (built as they are)"
fi
log "$TREE"

if [ "$BUILD" = 1 ]; then
    log "== cargo build --release --bin bench_server"
    cargo build --release --bin bench_server >&2
fi
[ -x "$BIN" ] || die "$BIN is missing (build it, or run without BUILD=0)"
if ! git diff --quiet HEAD -- livepush livepush-macros examples Cargo.toml Cargo.lock 2>/dev/null; then
    TREE="WARNING: livepush/, livepush-macros/ or examples/ differ from HEAD (built as they are)"
fi

echo "# livepush recovery figures"
echo
echo "- commit: $REV ($TREE)"
echo "- $(redis-server --version | cut -d' ' -f1-3), $(curl --version | head -1 | cut -d' ' -f1-2), $(nproc) cores"
echo "- load before: ${LOAD_BEFORE##*load average: }"
echo "- bench_server: LIVEPUSH_REPLAY=1000, defaults otherwise"
echo

# ---------------------------------------------------------------------------------------------
# 1. Redis restart -> ready
# ---------------------------------------------------------------------------------------------
if [[ " $PHASES " == *" restart "* ]] && (( RESTARTS > 0 )); then
    log "== phase 1: Redis restart -> ready ($RESTARTS restarts)"
    D="$WORK/restart"
    mkdir -p "$D"
    pick_port; RPORT=$PORT
    pick_port; HPORT=$PORT
    READY="http://127.0.0.1:$HPORT/health/ready"

    start_redis "$RPORT" "$D" "$D/redis.log"; REDIS_PID=$STARTED_PID
    wait_pong "$RPORT" 10 || die "redis-server on $RPORT does not answer (see $D/redis.log)"
    start_bench_server "$HPORT" "redis://127.0.0.1:$RPORT/" "$D/bench_server.log"; SERVER_PID=$STARTED_PID
    wait_code "$READY" 200 30 0.05 || die "bench_server never ready (see $D/bench_server.log)"
    start_subscriber "$HPORT" "$D/sse.txt" $(( 120 + RESTARTS * 60 )); SUB_PID=$STARTED_PID
    # The subscriber is in place once an event published now reaches it.
    ok=0
    for ((i = 1; i <= 25; i++)); do
        publish "$HPORT" "-$i" >/dev/null
        if wait_arrival "$D/sse.txt" "-$i" 1; then ok=1; break; fi
    done
    [ "$ok" = 1 ] || die "the SSE subscriber receives nothing (see $D/sse.txt, $D/bench_server.log)"

    R_DOWN=() R_READY=() R_POLLS=() R_PERIOD=() R_PROBE=() R_SUB=() R_LOG=()
    for ((r = 1; r <= RESTARTS; r++)); do
        now_ns; tk=$NOW
        kill9_pid "$REDIS_PID"
        wait_code "$READY" 503 10 0.005 || die "restart $r: /health/ready never answered 503 after the kill"
        R_DOWN+=("$(ms $(( HIT_NS - tk )))")
        sleep 1
        start_redis "$RPORT" "$D" "$D/redis.log"; REDIS_PID=$STARTED_PID
        # t0: the first PONG, polled tightly (one redis-cli after the other, for at most 10 s).
        t0=""
        now_ns; deadline=$(( NOW + 10000000000 ))
        for ((i = 0; i < 20000; i++)); do
            if [ "$(redis_ping "$RPORT")" = PONG ]; then now_ns; t0=$NOW; break; fi
            now_ns; (( NOW < deadline )) || break
        done
        [ -n "$t0" ] || die "restart $r: redis-server did not come back (see $D/redis.log)"
        # t1: the first 200 of /health/ready, polled every ~5 ms (for at most 30 s).
        wait_code "$READY" 200 30 0.005 \
            || die "restart $r: /health/ready not 200 within 30 s of Redis answering (see $D/bench_server.log)"
        t1=$HIT_NS
        R_READY+=("$(ms $(( t1 - t0 )))")
        R_POLLS+=("$POLLS")
        R_PERIOD+=("$(awk -v d=$(( t1 - t0 )) -v n="$POLLS" 'BEGIN { printf "%.1f", d / 1e6 / n }')")
        # After ready: an event published now reaches the subscriber that was held open.
        if [ "$(publish "$HPORT" "$r")" = 200 ] && wait_arrival "$D/sse.txt" "$r" 5; then
            R_PROBE+=("$(ms $(( ARRIVAL_US * 1000 - t1 )))")
        else
            R_PROBE+=("NOT DELIVERED")
        fi
        if alive "$SUB_PID"; then R_SUB+=("open"); else R_SUB+=("CLOSED"); fi
        # The moment bench_server logged the reconnection (not polled): what the ready poll rounds up.
        tr=$(log_time_after "$D/bench_server.log" "Redis reconnected" "$tk")
        if [ -n "$tr" ]; then R_LOG+=("$(ms $(( tr - t0 )))"); else R_LOG+=("n/a"); fi
        log "restart $r: kill->503 ${R_DOWN[-1]} ms, PONG->ready ${R_READY[-1]} ms ($POLLS polls), probe ${R_PROBE[-1]}"
    done
    RESETS_1=$(grep -c ' event: livepush.reset$' "$D/sse.txt" || true)
    RESET_DATA_1=$(awk '/ event: livepush.reset$/ { getline; sub(/^[0-9]+ /, ""); print }' "$D/sse.txt" | sort | uniq -c | sed 's/^ */    /')
    stop_pid "$SUB_PID"
    stop_pid "$SERVER_PID"
    stop_pid "$REDIS_PID"

    read -r med max min <<<"$(stats "${R_READY[@]}")"
    read -r dmed dmax dmin <<<"$(stats "${R_DOWN[@]}")"
    read -r pmed pmax pmin <<<"$(stats "${R_PERIOD[@]}")"
    LOGGED=(); for v in "${R_LOG[@]}"; do [ "$v" = n/a ] || LOGGED+=("$v"); done
    read -r gmed gmax gmin <<<"$(stats "${LOGGED[@]}")"
    echo "## Redis restart -> ready ($RESTARTS restarts, one SSE subscriber held open)"
    echo
    echo "| figure | median | max | min |"
    echo "| --- | ---: | ---: | ---: |"
    echo "| first PONG of the restarted redis-server -> first 200 of /health/ready | $med ms | $max ms | $min ms |"
    echo "| first PONG -> bench_server logs \"Redis reconnected\" (no HTTP poll in it) | $gmed ms | $gmax ms | $gmin ms |"
    echo "| SIGKILL of redis-server -> first 503 of /health/ready | $dmed ms | $dmax ms | $dmin ms |"
    echo "| ready poll period (curl + 5 ms sleep), part of the first figure | $pmed ms | $pmax ms | $pmin ms |"
    echo
    echo "Raw samples (Redis was down ~1 s + the time to see the 503 in each restart):"
    echo
    echo "| restart | kill -> 503 (ms) | PONG -> ready (ms) | PONG -> \"Redis reconnected\" logged (ms) | ready polls | poll period (ms) | ready -> probe event delivered (ms) | subscriber |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    for ((r = 0; r < RESTARTS; r++)); do
        echo "| $((r + 1)) | ${R_DOWN[r]} | ${R_READY[r]} | ${R_LOG[r]} | ${R_POLLS[r]} | ${R_PERIOD[r]} | ${R_PROBE[r]} | ${R_SUB[r]} |"
    done
    echo
    echo "PONG -> ready samples (ms): ${R_READY[*]}"
    echo
    echo "The held subscriber received $RESETS_1 \`livepush.reset\` events over the $RESTARTS restarts; their data:"
    echo
    echo '```'
    echo "${RESET_DATA_1:-    (none)}"
    echo '```'
    echo
fi

# ---------------------------------------------------------------------------------------------
# 2. Sentinel failover -> delivery
# ---------------------------------------------------------------------------------------------
sentinel_counts() { # sentinel_port -> "num-slaves num-other-sentinels"
    redis-cli -h 127.0.0.1 -p "$1" SENTINEL master mymaster 2>/dev/null | awk '
        prev == "num-slaves" { s = $0 } prev == "num-other-sentinels" { o = $0 } { prev = $0 }
        END { print (s == "" ? "-" : s), (o == "" ? "-" : o) }' || true
}

master_port_of() { # sentinel_port -> the port the sentinel names as master of mymaster
    redis-cli -h 127.0.0.1 -p "$1" SENTINEL get-master-addr-by-name mymaster 2>/dev/null | tail -n 1 || true
}

repl_field() { # port field
    redis-cli -h 127.0.0.1 -p "$1" INFO replication 2>/dev/null | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }' || true
}

# Background: records when the first sentinel, and when all three, name port `want` as master.
# Writes "any <ns>" and "all <ns>" lines to `out`; at most `secs` s.
promotion_watcher() { # out want secs s1 s2 s3
    local out="$1" want="$2" secs="$3" i s n any="" deadline
    shift 3
    now_ns; deadline=$(( NOW + secs * 1000000000 ))
    for ((i = 0; i < secs * 200; i++)); do
        n=0
        for s in "$@"; do [ "$(master_port_of "$s")" = "$want" ] && n=$((n + 1)); done
        now_ns
        if (( n > 0 )) && [ -z "$any" ]; then any=$NOW; echo "any $NOW" >>"$out"; fi
        if (( n == $# )); then echo "all $NOW" >>"$out"; return 0; fi
        (( NOW < deadline )) || return 0
        sleep 0.005
    done
}

# "delivered missing covered resets dups out_of_order missing_list" for the seqs listed in
# `published` (one "seq code" line each; only those answered 200 count) against the capture.
gap_analysis() { # capture published
    awk '
        FNR == NR { if ($2 == "200") { want[++nw] = $1 + 0 } ; next }
        { sub(/^[0-9]+ /, "") }
        $0 == "event: livepush.reset" { tok[++nt] = "R"; resets++; next }
        /^data: \{"seq":-?[0-9]+\}$/ {
            v = $0; sub(/^data: \{"seq":/, "", v); sub(/\}$/, "", v); v += 0
            tok[++nt] = v
            if (v in seen) dups++
            seen[v] = 1
            if (nt > 1 && started && v < hi) ooo++
            if (!started || v > hi) hi = v
            started = 1
        }
        END {
            for (k = 1; k <= nw; k++) {
                s = want[k]
                if (s in seen) { delivered++; continue }
                missing++; list = list " " s
                lo = 0; for (i = 1; i <= nt; i++) if (tok[i] != "R" && tok[i] < s) lo = i
                up = nt + 1; for (i = lo + 1; i <= nt; i++) if (tok[i] != "R" && tok[i] > s) { up = i; break }
                c = 0; for (i = lo + 1; i < up; i++) if (tok[i] == "R") c = 1
                covered += c
            }
            printf "%d %d %d %d %d %d %s\n", delivered, missing, covered, resets, dups, ooo, (list == "" ? "-" : list)
        }' "$2" "$1"
}

if [[ " $PHASES " == *" failover "* ]] && (( FAILOVERS > 0 )); then
    log "== phase 2: Sentinel failover -> delivery ($FAILOVERS failovers, fresh topology each)"
    F_PROMO_ANY=() F_PROMO_ALL=() F_DELIV=() F_PART=() F_ROWS=() F_GAPS=() F_MISSING=() F_RESETDATA=() F_RECON=() F_DRAIN=()
    for ((f = 1; f <= FAILOVERS; f++)); do
        D="$WORK/failover-$f"
        mkdir -p "$D"
        pick_port; MP=$PORT
        pick_port; RP=$PORT
        pick_port; S1=$PORT
        pick_port; S2=$PORT
        pick_port; S3=$PORT
        pick_port; HPORT=$PORT
        READY="http://127.0.0.1:$HPORT/health/ready"
        FPIDS=()

        start_redis "$MP" "$D" "$D/master.log" --repl-diskless-sync-delay 0; MASTER_PID=$STARTED_PID; FPIDS+=("$STARTED_PID")
        start_redis "$RP" "$D" "$D/replica.log" --replicaof 127.0.0.1 "$MP"; FPIDS+=("$STARTED_PID")
        wait_pong "$MP" 10 || die "failover $f: master does not answer (see $D/master.log)"
        ok=0
        for ((i = 0; i < 500; i++)); do
            [ "$(repl_field "$RP" master_link_status)" = up ] && { ok=1; break; }
            sleep 0.02
        done
        [ "$ok" = 1 ] || die "failover $f: the replica never synced (see $D/replica.log)"
        for s in "$S1" "$S2" "$S3"; do
            mkdir -p "$D/sentinel-$s"
            printf '%s\n' "bind 127.0.0.1" "dir $D/sentinel-$s" \
                "sentinel monitor mymaster 127.0.0.1 $MP 2" \
                "sentinel down-after-milliseconds mymaster 1000" \
                "sentinel failover-timeout mymaster 5000" >"$D/sentinel-$s/sentinel.conf"
            redis-server "$D/sentinel-$s/sentinel.conf" --sentinel --port "$s" >"$D/sentinel-$s.log" 2>&1 &
            PIDS+=("$!"); FPIDS+=("$!")
        done
        # Each sentinel must know the replica and the two other sentinels, or there is no quorum.
        ok=0
        for ((i = 0; i < 300; i++)); do
            all=1
            for s in "$S1" "$S2" "$S3"; do [ "$(sentinel_counts "$s")" = "1 2" ] || all=0; done
            [ "$all" = 1 ] && { ok=1; break; }
            sleep 0.1
        done
        [ "$ok" = 1 ] || die "failover $f: the sentinels did not find each other and the replica in 30 s (see $D/sentinel-*.log)"

        start_bench_server "$HPORT" "redis+sentinel://127.0.0.1:$S1,127.0.0.1:$S2,127.0.0.1:$S3/mymaster" "$D/bench_server.log"
        SERVER_PID=$STARTED_PID; FPIDS+=("$STARTED_PID")
        wait_code "$READY" 200 30 0.05 || die "failover $f: bench_server never ready (see $D/bench_server.log)"
        start_subscriber "$HPORT" "$D/sse.txt" 300; SUB_PID=$STARTED_PID; FPIDS+=("$STARTED_PID")
        seq=0 ok=0
        for ((i = 0; i < 25; i++)); do
            seq=$((seq + 1))
            publish "$HPORT" "$seq" >/dev/null
            if wait_arrival "$D/sse.txt" "$seq" 1; then ok=1; break; fi
        done
        [ "$ok" = 1 ] || die "failover $f: events published before the kill do not arrive (see $D/sse.txt)"
        for ((i = 0; i < 3; i++)); do # a few more before the kill, all of which must arrive
            seq=$((seq + 1))
            [ "$(publish "$HPORT" "$seq")" = 200 ] || die "failover $f: publish before the kill failed"
            sleep 0.05
        done
        wait_arrival "$D/sse.txt" "$seq" 5 || die "failover $f: seq $seq (before the kill) did not arrive"
        # Let the replica catch up with the master, so the figure is not about writes in flight.
        synced=no
        for ((i = 0; i < 100; i++)); do
            mo=$(repl_field "$MP" master_repl_offset); ro=$(repl_field "$RP" master_repl_offset)
            [ -n "$mo" ] && [ "$mo" = "$ro" ] && { synced=yes; break; }
            sleep 0.02
        done

        : >"$D/promotion.txt"
        promotion_watcher "$D/promotion.txt" "$RP" 40 "$S1" "$S2" "$S3" &
        WATCH_PID=$!; PIDS+=("$WATCH_PID")
        first="" # the first seq published after the kill that /publish accepted (200)
        : >"$D/published.txt"
        log "failover $f: master :$MP, replica :$RP (offsets synced: $synced), sentinels :$S1 :$S2 :$S3; killing the master"

        now_ns; t0=$NOW
        kill9_pid "$MASTER_PID"
        echo "$t0" >"$D/t0.txt"
        # Publish every 50 ms (for at most 30 s) until the first event published after the kill
        # has arrived, then 1 s more.
        t1_us="" extra=0
        for ((i = 0; i < 600; i++)); do
            seq=$((seq + 1))
            code=$(publish "$HPORT" "$seq")
            now_ns
            echo "$seq $code $NOW" >>"$D/published.txt"
            [ -z "$first" ] && [ "$code" = 200 ] && first=$seq
            if [ -z "$t1_us" ]; then
                [ -n "$first" ] && t1_us=$(arrival_us "$D/sse.txt" "$first")
            else
                extra=$((extra + 1))
                (( extra < 20 )) || break
            fi
            (( NOW - t0 < 30000000000 )) || break
            now_ns
            wait_ns=$(( t0 + (i + 1) * 50000000 - NOW ))
            (( wait_ns > 0 )) && sleep "$(awk -v n="$wait_ns" 'BEGIN { printf "%.4f", n / 1e9 }')"
        done
        last=$seq
        [ -n "$t1_us" ] || [ -z "$first" ] || t1_us=$(arrival_us "$D/sse.txt" "$first")
        # Stragglers (the retry buffer drains in order): wait up to 10 s for the last one.
        wait_arrival "$D/sse.txt" "$last" 10 || true
        for ((i = 0; i < 100; i++)); do alive "$WATCH_PID" || break; sleep 0.1; done
        stop_pid "$WATCH_PID"

        promo_any=$(awk '$1 == "any" { print $2 }' "$D/promotion.txt")
        promo_all=$(awk '$1 == "all" { print $2 }' "$D/promotion.txt")
        pa="n/a" pl="n/a" dl="NOT DELIVERED" part="n/a"
        [ -n "$promo_any" ] && { pa=$(ms $(( promo_any - t0 ))); F_PROMO_ANY+=("$pa"); }
        [ -n "$promo_all" ] && { pl=$(ms $(( promo_all - t0 ))); F_PROMO_ALL+=("$pl"); }
        if [ -n "$t1_us" ]; then
            dl=$(ms $(( t1_us * 1000 - t0 ))); F_DELIV+=("$dl")
            [ -n "$promo_any" ] && { part=$(ms $(( t1_us * 1000 - promo_any ))); F_PART+=("$part"); }
        fi
        # bench_server's own log splits livepush's part: the listener's reconnection (its backoff
        # while the sentinels still named the dead master), then the retry buffer's next attempt.
        tr=$(log_time_after "$D/bench_server.log" "Redis reconnected" "$t0")
        rc="n/a" dr="n/a"
        if [ -n "$tr" ] && [ -n "$promo_any" ]; then rc=$(ms $(( tr - promo_any ))); F_RECON+=("$rc"); fi
        if [ -n "$tr" ] && [ -n "$t1_us" ]; then dr=$(ms $(( t1_us * 1000 - tr ))); F_DRAIN+=("$dr"); fi
        npub=$(wc -l <"$D/published.txt")
        period=$(awk -v t0="$t0" '{ n++; last = $3 } END { if (n) printf "%.1f", (last - t0) / 1e6 / n; else print "-" }' "$D/published.txt")
        codes=$(awk '{ c[$2]++ } END { for (k in c) printf "%s%s x%d", (n++ ? ", " : ""), k, c[k] }' "$D/published.txt")
        read -r delivered missing covered resets dups ooo missing_list <<<"$(gap_analysis "$D/sse.txt" "$D/published.txt")"
        if (( missing == covered )); then gap="yes"; else gap="NO: $((missing - covered)) silent"; F_GAPS+=("$f"); fi
        if alive "$SUB_PID"; then subst=open; else subst=CLOSED; fi
        F_ROWS+=("| $f | $pa | $pl | $dl | $part | $rc | $dr | $npub ($codes), every $period ms | $delivered | $missing | $covered | $resets | $dups | $ooo | $gap | $subst | $synced |")
        F_MISSING+=("$missing_list")
        F_RESETDATA+=("$(awk '/ event: livepush.reset$/ { getline; sub(/^[0-9]+ /, ""); print }' "$D/sse.txt" | tr '\n' ' ')")
        log "failover $f: promotion $pa ms, first post-kill event delivered $dl ms, missing $missing (covered by a reset: $covered), resets $resets"

        for ((i = ${#FPIDS[@]} - 1; i >= 0; i--)); do
            for p in "${PIDS[@]}"; do [ "$p" = "${FPIDS[i]}" ] && stop_pid "$p"; done
        done
    done

    read -r dmed dmax dmin <<<"$(stats "${F_DELIV[@]}")"
    read -r amed amax amin <<<"$(stats "${F_PROMO_ANY[@]}")"
    read -r lmed lmax lmin <<<"$(stats "${F_PROMO_ALL[@]}")"
    read -r pmed pmax pmin <<<"$(stats "${F_PART[@]}")"
    read -r cmed cmax cmin <<<"$(stats "${F_RECON[@]}")"
    read -r rmed rmax rmin <<<"$(stats "${F_DRAIN[@]}")"
    echo "## Sentinel failover -> delivery ($FAILOVERS failovers, fresh topology each: master, replica, 3 sentinels, down-after 1000 ms)"
    echo
    echo "| figure | median | max | min |"
    echo "| --- | ---: | ---: | ---: |"
    echo "| SIGKILL of the master -> a sentinel names the replica (Sentinel's part) | $amed ms | $amax ms | $amin ms |"
    echo "| SIGKILL of the master -> all three sentinels name it | $lmed ms | $lmax ms | $lmin ms |"
    echo "| SIGKILL of the master -> first event published after it delivered over SSE | $dmed ms | $dmax ms | $dmin ms |"
    echo "| first sentinel names the replica -> that event delivered (livepush's part) | $pmed ms | $pmax ms | $pmin ms |"
    echo "| ... of which: promotion seen -> bench_server logs \"Redis reconnected\" | $cmed ms | $cmax ms | $cmin ms |"
    echo "| ... of which: \"Redis reconnected\" -> that event delivered (retry buffer) | $rmed ms | $rmax ms | $rmin ms |"
    echo "| runs with a silent gap | ${#F_GAPS[@]} of $FAILOVERS | | |"
    echo
    echo "Events were published every 50 ms from the kill on; promotion was polled every ~5 ms plus three redis-cli calls; delivery times are arrival stamps of the SSE lines."
    echo
    echo "| run | kill -> promotion, any sentinel (ms) | all sentinels (ms) | kill -> first post-kill event delivered (ms) | promotion -> delivered (ms) | promotion -> reconnected logged (ms) | reconnected -> delivered (ms) | published after kill (HTTP codes) | delivered | missing | missing covered by a reset | resets | duplicates | out of order | no silent gap | subscriber | replica in sync at kill |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |"
    printf '%s\n' "${F_ROWS[@]}"
    echo
    echo "kill -> delivered samples (ms): ${F_DELIV[*]:-none}"
    echo "kill -> promotion samples (ms): ${F_PROMO_ANY[*]:-none}"
    echo
    for ((f = 0; f < FAILOVERS; f++)); do
        echo "- run $((f + 1)): missing seqs: ${F_MISSING[f]}; reset data: ${F_RESETDATA[f]:-none}"
    done
    echo
fi

LOAD_AFTER="$(uptime)"
log "$LOAD_AFTER"
echo "- load after: ${LOAD_AFTER##*load average: }"
