#!/usr/bin/env bash
# The outbox figures of BENCHMARKS.md: commit-to-delivery latency (direct publish vs outbox, SQLite
# and PostgreSQL, at 100 and 1,000 commits/s) and relay throughput, REPEAT times each (default 3),
# one JSON line per run. Needs PostgreSQL on 127.0.0.1:5432 (BENCH_POSTGRES_URL for another);
# REDIS_URL=redis://… measures through Redis instead of the in-memory broker.
set -euo pipefail
cd "$(dirname "$0")/.."
repeat="${REPEAT:-3}"
secs="${SECONDS_PER_RUN:-5}"
cargo build --release --bin outbox_latency >&2
bin="${CARGO_TARGET_DIR:-target}/release/outbox_latency"
echo "# $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for rate in 100 1000; do
  for mode in direct-sqlite outbox-sqlite outbox-sqlite-poll direct-postgres outbox-postgres; do
    for _ in $(seq "$repeat"); do "$bin" "$mode" "$rate" "$secs"; done
  done
done
for db in sqlite postgres; do
  for _ in $(seq "$repeat"); do "$bin" "throughput-$db" 20000; done
done
echo "# done, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
