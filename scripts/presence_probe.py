#!/usr/bin/env python3
"""Presence-event probes of `chat` instances (scripts/bench_presence.sh; issue 25).

watch BASE ROOM SECONDS
    One member stream (`user=watcher`) on BASE for SECONDS; counts the presence events it gets
    after the snapshot (`livepush.join`, `livepush.leave`, `livepush.presence_diff`) and prints
    one JSON object: the events, the most in any 1 s window (sliding), the mean per second from
    the first to the last one, and the joins and leaves they name.

latency JOIN_BASE WATCH_BASE... --room ROOM --n N --grace-ms G
    A watcher stream per WATCH_BASE, then N members, one after another: each opens a stream on
    JOIN_BASE (`user=l<k>`); its join latency is the time from its response head (livepush
    answers once the member is recorded) until each watcher has seen it join. Then it closes
    (FIN) and, after a random pause of up to 200 ms (so that the joins sample every phase of
    the instances' 100 ms ticks), the next one starts; its leave latency is the time from the
    close until each watcher has seen it leave, less the grace period G (a leave waits for it
    by design), so the leaves of several members overlap the later joins. Prints p50/p99/max per watcher and for
    "seen by every watcher" (`watcherI`: the I-th WATCH_BASE).

Standard library only: http.client over loopback, one thread per watcher.
"""

import argparse
import http.client
import json
import random
import socket
import sys
import threading
import time
from urllib.parse import urlsplit

PRESENCE_EVENTS = ("livepush.join", "livepush.leave", "livepush.presence_diff")


def open_stream(base, path, timeout=30):
    """A live SSE stream: (connection, response) after a 200 response head."""
    url = urlsplit(base)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"error: {base} is not a loopback address")
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    conn.request("GET", path, headers={"Accept": "text/event-stream"})
    resp = conn.getresponse()
    if resp.status != 200:
        sys.exit(f"error: GET {base}{path}: {resp.status} {resp.read()[:200]!r}")
    return conn, resp


def close_stream(conn, resp):
    """Closes the stream as a browser tab does: FIN."""
    try:
        conn.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    resp.close()
    conn.close()


def events(resp):
    """(event name, parsed data) of each SSE event on `resp`, until the stream ends."""
    name, data = None, []
    while True:
        line = resp.readline()
        if not line:
            return
        line = line.decode().rstrip("\r\n")
        if line == "":
            if data:
                yield name or "message", json.loads("\n".join(data))
            name, data = None, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


def changes(name, data):
    """The (key, joined?) pairs a presence event names."""
    if name == "livepush.join":
        return [(data["key"], True)]
    if name == "livepush.leave":
        return [(data["key"], False)]
    if name == "livepush.presence_diff":
        return [(m["key"], True) for m in data.get("joins", [])] + [
            (m["key"], False) for m in data.get("leaves", [])
        ]
    return []


def percentiles(values):
    values = sorted(values)
    if not values:
        return None
    pick = lambda p: round(values[round((len(values) - 1) * p / 100)] * 1000, 1)
    return {"n": len(values), "p50_ms": pick(50), "p99_ms": pick(99), "max_ms": pick(100)}


def watch(args):
    conn, resp = open_stream(args.base, f"/rooms/{args.room}/events?user=watcher")
    stamps, joins, leaves = [], 0, 0
    deadline = time.monotonic() + args.seconds

    def read():
        nonlocal joins, leaves
        try:
            for name, data in events(resp):
                if name in PRESENCE_EVENTS:
                    stamps.append(time.monotonic())
                    named = changes(name, data)
                    joins += sum(1 for _, joined in named if joined)
                    leaves += sum(1 for _, joined in named if not joined)
        except Exception:  # noqa: BLE001 - the stream was closed under the reader at the end
            pass

    threading.Thread(target=read, daemon=True).start()
    time.sleep(max(0.0, deadline - time.monotonic()))
    close_stream(conn, resp)
    ts = list(stamps)
    most, j = 0, 0
    for i, t in enumerate(ts):  # the most events in any window [t, t + 1 s)
        while j < len(ts) and ts[j] < t + 1.0:
            j += 1
        most = max(most, j - i)
    span = ts[-1] - ts[0] if len(ts) > 1 else 0.0
    print(json.dumps({
        "events": len(ts),
        "max_events_in_1s": most,
        "mean_events_per_s": round(len(ts) / span, 2) if span > 0 else None,
        "span_s": round(span, 2),
        "joins_named": joins,
        "leaves_named": leaves,
    }))


class Watcher:
    """A member stream on one instance that stamps when it sees each key join and leave."""

    def __init__(self, base, room, user, seen):
        self.base, self.seen = base, seen
        self.conn, self.resp = open_stream(base, f"/rooms/{room}/events?user={user}")
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        try:
            for name, data in events(self.resp):
                now = time.monotonic()
                with self.seen:
                    for key, joined in changes(name, data):
                        self.seen.stamps.setdefault((self.base, key, joined), now)
                    self.seen.notify_all()
        except Exception:  # noqa: BLE001 - the stream was closed under the reader at the end
            pass


class Seen(threading.Condition):
    def __init__(self):
        super().__init__()
        self.stamps = {}

    def wait_all(self, bases, key, joined, timeout=5.0):
        with self:
            self.wait_for(lambda: all((b, key, joined) in self.stamps for b in bases), timeout)
            return [self.stamps.get((b, key, joined)) for b in bases]


def latency(args):
    seen = Seen()
    watchers = [Watcher(b, args.room, f"w{i}", seen) for i, b in enumerate(args.watch)]
    time.sleep(0.5)  # past the watchers' snapshots and their own joins
    opened, closed = {}, {}
    phase = random.Random(25)
    for k in range(args.n):
        # a random pause, so that the joins do not lock onto the instances' 100 ms ticks
        time.sleep(phase.uniform(0.0, 0.2))
        conn, resp = open_stream(args.join, f"/rooms/{args.room}/events?user=l{k}")
        opened[k] = time.monotonic()
        seen.wait_all(args.watch, f"l{k}", True)
        close_stream(conn, resp)
        closed[k] = time.monotonic()
    grace = args.grace_ms / 1000
    for k in range(args.n):
        seen.wait_all(args.watch, f"l{k}", False, timeout=grace + 5.0)
    out = {"n": args.n, "grace_ms": args.grace_ms, "join_base": args.join, "watchers": args.watch}
    for kind, joined, start, less in (("join", True, opened, 0.0), ("leave", False, closed, grace)):
        both, missed = [], 0
        for i, b in enumerate(args.watch):
            lat = []
            for k in range(args.n):
                t = seen.stamps.get((b, f"l{k}", joined))
                if t is None:
                    missed += 1
                else:
                    lat.append(t - start[k] - less)
            out[f"{kind}_watcher{i}"] = percentiles(lat)
        for k in range(args.n):
            ts = [seen.stamps.get((b, f"l{k}", joined)) for b in args.watch]
            if None not in ts:
                both.append(max(ts) - start[k] - less)
        out[f"{kind}_all"] = percentiles(both)
        out[f"{kind}_missed"] = missed
    for w in watchers:
        close_stream(w.conn, w.resp)
    print(json.dumps(out))
    if out["join_missed"] or out["leave_missed"]:
        sys.exit(3)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    w = sub.add_parser("watch")
    w.add_argument("base")
    w.add_argument("room")
    w.add_argument("seconds", type=float)
    lat = sub.add_parser("latency")
    lat.add_argument("join")
    lat.add_argument("watch", nargs="+")
    lat.add_argument("--room", default="latency")
    lat.add_argument("--n", type=int, default=100)
    lat.add_argument("--grace-ms", type=int, default=3000)
    args = p.parse_args()
    watch(args) if args.mode == "watch" else latency(args)


if __name__ == "__main__":
    main()
