#!/usr/bin/env python3
"""Markdown tables of scripts/bench.sh's results.jsonl (one JSON object per row run).

    python3 scripts/bench_table.py bench-results/results.jsonl bench-results/table.md

Rows named KIND-SHAPE#k are the k-th repetition of KIND-SHAPE. Every figure is the median of the
repetitions with the range (min–max) beside it; lost / dup add up all repetitions. Where two
servers ran the same shape alternately, the ratio table pairs repetition k of one with
repetition k of the other and gives the median and range of those ratios.
"""
import json
import os
import statistics
import sys
from collections import OrderedDict


def load(path):
    groups = OrderedDict()
    for line in open(path):
        if line.strip():
            d = json.loads(line)
            d.setdefault("set", "throughput")
            c = d.get("redis_commands")
            if c:
                # the bench's own: CONFIG RESETSTAT, INFO samples (Redis 7 names subcommands
                # "config|resetstat"; its calls also count the commands scripts run, by name)
                for name in list(c):
                    if name.split("|")[0] in ("config", "info"):
                        del c[name]
                d["redis_calls"] = sum(c.values())
            groups.setdefault(d["row"].split("#")[0], []).append(d)
    return groups


def get(d, path):
    for k in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def values(runs, path):
    return [v for v in (get(r, path) for r in runs) if isinstance(v, (int, float))]


def f(v, fmt="{:,.0f}"):
    return "–" if v is None else fmt.format(v)


def med(runs, path, fmt="{:,.0f}", scale=1.0, spread=True):
    vs = [v * scale for v in values(runs, path)]
    if not vs:
        return "–"
    m = f(statistics.median(vs), fmt)
    if spread and len(vs) > 1:
        m += f" ({f(min(vs), fmt)}–{f(max(vs), fmt)})"
    return m


def total(runs, path):
    vs = values(runs, path)
    return f(sum(vs)) if vs else "–"


def ok(runs):
    bad = [r for r in runs if r.get("exit_status") != 0 or r.get("timed_out")]
    if not bad:
        return "yes"
    return f"NO {len(bad)}/{len(runs)} ({bad[0].get('first_error') or bad[0].get('error') or 'timed out'})"


def load_range(runs):
    vs = values(runs, "load1_before") + values(runs, "load1_after")
    return f"{min(vs):.2f}–{max(vs):.2f}" if vs else "–"


def n_runs(runs):
    return f"{len(runs)}"


def ms(runs, key, path="lat_us"):
    return med(runs, f"{path}.{key}", "{:.1f}", 1 / 1000, spread=False)


def table(header, rows):
    out = ["| " + " | ".join(h for h, _ in header) + " |",
           "| " + " | ".join(a for _, a in header) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def throughput(groups, set_name):
    header = [("row", "---"), ("server", "---"), ("N", "---:"), ("events", "---:"),
              ("deliveries/s", "---:"), ("publish req/s", "---:"),
              ("p50 / p99 / max latency (ms), p99 range", "---:"), ("lost", "---:"), ("dup", "---:"),
              ("KiB RSS / idle conn", "---:"), ("server CPU µs / delivery", "---:"),
              ("Redis conns (max during run)", "---:"), ("heartbeats", "---:"), ("runs", "---:"),
              ("load avg (1 min)", "---:"), ("ok", "---")]
    rows = []
    for row, runs in groups.items():
        if runs[0]["set"] != set_name:
            continue
        d = runs[0]
        rate = f" @{d['rate']}/s" if d.get("rate") else ""
        lat = f"{ms(runs, 'p50')} / {ms(runs, 'p99')} / {ms(runs, 'max')}"
        if len(runs) > 1:
            lat += f" ({med(runs, 'lat_us.p99', '{:.1f}', 1 / 1000).split(' ', 1)[-1].strip('()')})"
        rows.append([row, str(d.get("label")), f(d.get("subscribers")), f(d.get("events")) + rate,
                     med(runs, "deliveries_per_s"), med(runs, "publish_per_s", spread=False), lat,
                     total(runs, "lost"), total(runs, "duplicates"),
                     med(runs, "kib_per_conn", "{:.1f}"), med(runs, "server_cpu_us_per_delivery", "{:.2f}"),
                     med(runs, "redis_clients_max", spread=False), med(runs, "heartbeats", spread=False),
                     n_runs(runs), load_range(runs), ok(runs)])
    return table(header, rows) if rows else []


def paired(groups, set_name, base_of):
    """Ratios of repetition k of a row to repetition k of the row base_of(row) names."""
    header = [("row", "---"), ("vs", "---"), ("CPU / delivery ratio", "---:"),
              ("deliveries/s ratio", "---:"), ("p99 ratio", "---:"), ("pairs", "---:")]
    rows = []
    for row, runs in groups.items():
        if runs[0]["set"] != set_name:
            continue
        base = base_of(row)
        if base is None or base == row or base not in groups:
            continue
        by_rep = {r.get("rep"): r for r in groups[base]}

        def ratio(path):
            rs = []
            for r in runs:
                b = by_rep.get(r.get("rep"))
                x, y = get(r, path), get(b, path) if b else None
                if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y:
                    rs.append(x / y)
            if not rs:
                return "–", 0
            m = f"**{statistics.median(rs):.2f}×**"
            if len(rs) > 1:
                m += f" ({min(rs):.2f}–{max(rs):.2f})"
            return m, len(rs)

        cpu, n = ratio("server_cpu_us_per_delivery")
        rate, _ = ratio("deliveries_per_s")
        p99, _ = ratio("lat_us.p99")
        rows.append([row, base, cpu, rate, p99, str(n)])
    return table(header, rows) if rows else []


def by_name(d):
    c = d.get("redis_commands") or {}
    return ", ".join(f"{k.replace('|', ' ')} {v:,}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])) or "–"


def storm(groups):
    header = [("row", "---"), ("N", "---:"), ("events", "---:"), ("caught up", "---:"),
              ("catch-up p50 / p99 / max (s)", "---:"), ("lost", "---:"), ("dup", "---:"),
              ("peak RSS (MiB)", "---:"), ("publish time (s)", "---:"), ("Redis calls", "---:"),
              ("eval + evalsha", "---:"), ("publish cmds", "---:"), ("(s)subscribe", "---:"),
              ("Redis commands by name (first run)", "---"),
              ("runs", "---:"), ("load avg", "---:"), ("ok", "---")]
    rows = []
    for row, runs in groups.items():
        if runs[0]["set"] != "storm":
            continue
        d = runs[0]
        for r in runs:  # per-run sums of the Redis commands the tables name
            c = r.get("redis_commands") or {}
            r["_eval"] = c.get("eval", 0) + c.get("evalsha", 0) + c.get("evalsha_ro", 0) + c.get("eval_ro", 0) if c else None
            r["_pub"] = c.get("publish", 0) + c.get("spublish", 0) if c else None
            r["_sub"] = c.get("subscribe", 0) + c.get("ssubscribe", 0) if c else None
        caught = f"{med(runs, 'storm.caught_up')} / {f(d.get('subscribers'))}"
        catch = " / ".join(med(runs, f"storm.catchup_ms.{k}", "{:.2f}", 1 / 1000) for k in ("p50", "p99", "max"))
        rows.append([row, f(d.get("subscribers")), f"{f(d.get('events'))} @{d.get('rate')}/s, storm at {get(d, 'storm.at')}",
                     caught, catch, total(runs, "lost"), total(runs, "duplicates"),
                     med(runs, "rss_kb_peak", "{:.0f}", 1 / 1024), med(runs, "publish_s", "{:.1f}"),
                     med(runs, "redis_calls"), med(runs, "_eval"), med(runs, "_pub"), med(runs, "_sub"),
                     by_name(d), n_runs(runs), load_range(runs), ok(runs)])
    return table(header, rows) if rows else []


def topics(groups):
    header = [("row", "---"), ("server", "---"), ("N", "---:"), ("topics", "---:"), ("events", "---:"),
              ("deliveries/s", "---:"), ("p50 / p99 (ms)", "---:"), ("lost", "---:"), ("dup", "---:"),
              ("server CPU µs / delivery", "---:"), ("peak RSS (MiB)", "---:"),
              ("Redis channels (max sampled)", "---:"), ("Redis conns", "---:"), ("runs", "---:"),
              ("load avg", "---:"), ("ok", "---")]
    rows = []
    for row, runs in groups.items():
        if runs[0]["set"] != "topics":
            continue
        d = runs[0]
        rows.append([row, str(d.get("label")), f(d.get("subscribers")), f(d.get("topics")), f(d.get("events")),
                     med(runs, "deliveries_per_s"), f"{ms(runs, 'p50')} / {med(runs, 'lat_us.p99', '{:.1f}', 1 / 1000)}",
                     total(runs, "lost"), total(runs, "duplicates"),
                     med(runs, "server_cpu_us_per_delivery", "{:.2f}"), med(runs, "rss_kb_peak", "{:.0f}", 1 / 1024),
                     med(runs, "redis_channels_max"), med(runs, "redis_clients_max", spread=False),
                     n_runs(runs), load_range(runs), ok(runs)])
    return table(header, rows) if rows else []


def churn(groups):
    header = [("row", "---"), ("server", "---"), ("cycles", "---:"), ("failed", "---:"),
              ("server CPU µs / (subscribe + unsubscribe)", "---:"), ("server CPU share", "---:"),
              ("response head p50 / p99 (ms)", "---:"), ("RSS before → after (MiB)", "---:"),
              ("Redis (s)subscribe / (s)unsubscribe calls", "---:"), ("Redis calls", "---:"),
              ("channels left", "---:"), ("runs", "---:"), ("load avg", "---:"), ("ok", "---")]
    rows = []
    for row, runs in groups.items():
        if runs[0]["set"] != "churn":
            continue
        d = runs[0]
        for r in runs:
            c = r.get("redis_commands")
            r["_sub"] = c.get("subscribe", 0) + c.get("ssubscribe", 0) if c else None
            r["_unsub"] = c.get("unsubscribe", 0) + c.get("sunsubscribe", 0) if c else None
        rows.append([row, str(d.get("label")), f"{f(d.get('cycles'))} ({d.get('rate')}/s, held {d.get('hold_ms')} ms)",
                     total(runs, "failed"), med(runs, "server_cpu_us_per_cycle", "{:.1f}"),
                     med(runs, "server_cpu_share", "{:.2f}"),
                     f"{med(runs, 'head_ms.p50', '{:.1f}', spread=False)} / "
                     f"{med(runs, 'head_ms.p99', '{:.1f}')}",
                     f"{med(runs, 'rss_kb_before', '{:.0f}', 1 / 1024, spread=False)} → {med(runs, 'rss_kb_after', '{:.0f}', 1 / 1024)}",
                     f"{med(runs, '_sub')} / {med(runs, '_unsub')}", med(runs, "redis_calls"),
                     med(runs, "redis_channels_left", spread=False), n_runs(runs), load_range(runs), ok(runs)])
    return table(header, rows) if rows else []


def main():
    results, out_path = sys.argv[1:3]
    groups = load(results)
    quick = os.environ.get("QUICK") == "1"
    out = []
    if os.environ.get("LOAD_START"):
        out.append(f"Load average (1, 5, 15 min) at start: {os.environ['LOAD_START']}; at end: {os.environ.get('LOAD_END', '?')}"
                   + (" — QUICK run: small counts, not figures to publish" if quick else ""))
        out.append("")

    def section(title, lines):
        if lines:
            out.extend([f"### {title}", ""] + lines + [""])

    def vs_baseline(row):  # memory-n1000 → baseline-n1000
        kind, _, shape = row.partition("-")
        return None if kind == "baseline" else f"baseline-{shape}"

    def vs_one_core(row):  # memory-2core-n10000 → memory-1core-n10000
        return row.replace("-2core-", "-1core-") if "-2core-" in row else None

    section("Throughput (median of the repetitions, range in brackets)", throughput(groups, "throughput"))
    section("Throughput ratios, repetition by repetition (vs the baseline)", paired(groups, "throughput", vs_baseline))
    section("Cores: 1 vs 2", throughput(groups, "cores"))
    section("Cores ratios (2 cores ÷ 1 core, repetition by repetition)", paired(groups, "cores", vs_one_core))
    def vs_one_worker(row):  # memory-w8-n10000-rate10 → memory-w1-n10000-rate10
        kind, _, shape = row.partition("-")
        workers, _, rest = shape.partition("-")
        return None if workers == "w1" else f"{kind}-w1-{rest}"

    section("Workers on one core (median of the repetitions, range in brackets)", throughput(groups, "workers"))
    section("Workers ratios (vs the baseline with the same workers)", paired(groups, "workers", vs_baseline))
    section("Workers ratios (vs 1 worker, same server)", paired(groups, "workers", vs_one_worker))
    section("Reconnect storm", storm(groups))
    section("Many topics", topics(groups))
    section("Many topics ratios (vs the baseline)", paired(groups, "topics", vs_baseline))
    section("Subscribe/unsubscribe churn", churn(groups))
    section("TLS and HTTP/2: plain (memory), TLS HTTP/1.1 (tlsh1), TLS h2 (tlsh2)", throughput(groups, "tls"))
    section("Idle connections (memory)", throughput(groups, "idle"))
    section("Idle connections ratios (vs the baseline)", paired(groups, "idle", vs_baseline))
    open(out_path, "w").write("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
