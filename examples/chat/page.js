// Built from page.ts and the livepush client by `npm run build:pages` (clients/typescript). Do not edit.

// src/sse.ts
var SseParser = class {
  constructor(sink) {
    this.sink = sink;
    this.decoder = new TextDecoder();
    /** Text after the last line ending. */
    this.rest = "";
    /** The last chunk ended with CR: a LF at the start of the next one ends no second line. */
    this.afterCr = false;
    this.data = [];
    this.event = "";
  }
  /** Parses a chunk of the body. */
  push(chunk) {
    let text = this.decoder.decode(chunk, { stream: true });
    if (this.afterCr && text.length > 0) {
      if (text.startsWith("\n")) text = text.slice(1);
      this.afterCr = false;
    }
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(this.rest + text.slice(start, i));
      this.rest = "";
      if (c === 13) {
        if (i + 1 === text.length) this.afterCr = true;
        else if (text.charCodeAt(i + 1) === 10) i += 1;
      }
      start = i + 1;
    }
    this.rest += text.slice(start);
  }
  line(line) {
    if (line === "") return this.endFrame();
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^[0-9]+$/.test(value)) this.sink.retry(Number(value));
  }
  endFrame() {
    const frame = {
      event: this.event || "message",
      data: this.data.length > 0 ? this.data.join("\n") : void 0,
      id: this.id
    };
    this.data = [];
    this.event = "";
    this.id = void 0;
    if (frame.data !== void 0 || frame.id !== void 0) this.sink.frame(frame);
  }
};

// src/index.ts
function trackMembers(sub2, topic, onChange) {
  const byKey = /* @__PURE__ */ new Map();
  const list = () => [...byKey.values()].sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
  const apply = (joins, leaves, snapshot) => {
    const joined = [];
    const left = [];
    if (snapshot) byKey.clear();
    for (const m of leaves) if (byKey.delete(m.key)) left.push(m);
    for (const m of joins) {
      if (!snapshot && !byKey.has(m.key)) joined.push(m);
      byKey.set(m.key, m);
    }
    onChange?.(list(), { joined, left, snapshot });
  };
  const typed = sub2;
  const offs = [
    typed.on("livepush.presence", (p) => {
      if (p.topic === topic) apply(p.members, [], true);
    }),
    typed.on("livepush.join", (j) => {
      if (j.topic === topic) apply([{ key: j.key, info: j.info }], [], false);
    }),
    typed.on("livepush.leave", (l) => {
      if (l.topic === topic) apply([], [{ key: l.key, info: l.info }], false);
    }),
    typed.on("livepush.presence_diff", (d) => {
      if (d.topic === topic) apply(d.joins, d.leaves, false);
    })
  ];
  return {
    get list() {
      return list();
    },
    stop: () => offs.forEach((off) => off())
  };
}
var RETRYABLE = /* @__PURE__ */ new Set([408, 425, 429, 500, 502, 503, 504]);
function subscribe(url, options = {}) {
  return new LivepushSubscription(url, options);
}
var LivepushSubscription = class {
  constructor(url, options) {
    this.url = url;
    this.options = options;
    this.handlers = /* @__PURE__ */ new Map();
    this.abort = new AbortController();
    this.current = "connecting";
    this.opened = new Promise((resolve) => this.markOpened = resolve);
    this.storage = options.storage === void 0 ? defaultStorage() : options.storage;
    this.storageKey = options.storageKey ?? defaultKey(url, options);
    this.lastId = options.lastEventId ?? this.read() ?? void 0;
    if (options.lastEventId != null) this.remember(options.lastEventId);
    void this.run();
  }
  get lastEventId() {
    return this.lastId;
  }
  get status() {
    return this.current;
  }
  on(event, handler) {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, set = /* @__PURE__ */ new Set());
    set.add(handler);
    return () => set.delete(handler);
  }
  state(event, options = {}) {
    const view = new CurrentState(options.keyOf);
    this.on(event, ((data, meta) => view.apply(data, meta)));
    return view;
  }
  close() {
    if (this.current === "closed") return;
    this.abort.abort();
    this.setStatus("closed", {});
  }
  setStatus(status2, detail) {
    if (this.current === "closed") return;
    this.current = status2;
    this.options.onStatus?.(status2, detail);
  }
  async run() {
    const fetchFn = this.options.fetch ?? globalThis.fetch.bind(globalThis);
    let attempt = 0;
    let previousStatus;
    while (!this.abort.signal.aborted) {
      let delay;
      const detail = {};
      try {
        const extra = await this.options.beforeConnect?.({
          attempt,
          lastEventId: this.lastId,
          previousStatus
        });
        const headers = {
          accept: "text/event-stream",
          ...this.options.headers,
          ...extra ?? {}
        };
        if (this.lastId !== void 0) headers["last-event-id"] = this.lastId;
        this.setStatus("connecting", {});
        const response = await fetchFn(this.requestUrl(), {
          headers,
          signal: this.abort.signal,
          cache: "no-store"
        });
        previousStatus = response.status;
        if (response.ok && response.body) {
          attempt = 0;
          previousStatus = void 0;
          this.setStatus("open", {});
          this.markOpened();
          await this.readStream(response.body);
          delay = this.backoff(0);
        } else {
          detail.httpStatus = response.status;
          const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
          void response.body?.cancel().catch(() => {
          });
          const credentials = (response.status === 401 || response.status === 403) && this.options.beforeConnect;
          if (!RETRYABLE.has(response.status) && !credentials) {
            this.options.onError?.(new Error(`${this.url} answered ${response.status}`));
            this.setStatus("closed", detail);
            return;
          }
          delay = retryAfter === void 0 ? this.backoff(attempt) : retryAfter + this.jitterUpTo(retryAfter * 0.1 + 50);
        }
      } catch (error) {
        if (this.abort.signal.aborted) return;
        detail.error = error;
        delay = this.backoff(attempt);
      }
      attempt += 1;
      detail.delayMs = Math.round(delay);
      this.setStatus("retrying", detail);
      await sleep(delay, this.abort.signal);
    }
  }
  requestUrl() {
    const params2 = [];
    if (this.options.topics?.length) params2.push("topic=" + encodeURIComponent(this.options.topics.join(",")));
    if (this.options.categories?.length)
      params2.push("category=" + encodeURIComponent(this.options.categories.join(",")));
    if (params2.length === 0) return this.url;
    return this.url + (this.url.includes("?") ? "&" : "?") + params2.join("&");
  }
  /** Reads the stream until it ends (or the subscription is closed). */
  async readStream(body) {
    const reader = body.getReader();
    const parser = new SseParser({
      frame: (frame) => this.frame(frame),
      retry: (ms) => this.serverRetryMs = ms
    });
    try {
      while (!this.abort.signal.aborted) {
        const { value, done } = await reader.read();
        if (done) return;
        parser.push(value);
      }
    } finally {
      reader.releaseLock();
    }
  }
  frame(frame) {
    if (this.abort.signal.aborted) return;
    if (frame.id !== void 0) this.lastId = frame.id;
    if (frame.data !== void 0) this.dispatch(frame.event, frame.data, frame.id);
    else if (frame.id !== void 0) this.remember(frame.id);
  }
  dispatch(event, raw, id) {
    const meta = { id, event };
    let data;
    try {
      data = JSON.parse(raw);
    } catch (error) {
      this.options.onError?.(error);
      data = raw;
    }
    try {
      if (event === "livepush.reset") this.options.onReset?.(data, meta);
      if (event === "livepush.lagged") this.options.onLagged?.(data, meta);
      for (const handler of this.handlers.get(event) ?? []) handler(data, meta);
    } catch (error) {
      this.options.onError?.(error);
    }
    if (id !== void 0) this.remember(id);
  }
  backoff(attempt) {
    const retry = this.options.retry ?? {};
    const initial = retry.initialMs ?? this.serverRetryMs ?? 500;
    const max = retry.maxMs ?? 3e4;
    const jitter = Math.min(1, Math.max(0, retry.jitter ?? 0.5));
    const base2 = Math.min(max, initial * 2 ** Math.min(attempt, 20));
    return base2 * (1 - jitter) + this.jitterUpTo(base2 * jitter);
  }
  jitterUpTo(ms) {
    return Math.random() * ms;
  }
  read() {
    try {
      return this.storage?.getItem(this.storageKey) ?? null;
    } catch {
      return null;
    }
  }
  remember(id) {
    this.lastId = id;
    try {
      this.storage?.setItem(this.storageKey, id);
    } catch {
    }
  }
};
var CurrentState = class {
  constructor(keyOf) {
    this.keyOf = keyOf;
    this.byKey = /* @__PURE__ */ new Map();
    this.handlers = /* @__PURE__ */ new Set();
  }
  get value() {
    return this.newest;
  }
  get id() {
    return this.newestId;
  }
  get values() {
    return this.byKey;
  }
  onChange(handler) {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }
  apply(data, meta) {
    this.byKey.set(this.keyOf ? this.keyOf(data) : "", data);
    this.newest = data;
    this.newestId = meta.id;
    for (const handler of this.handlers) handler(data, meta);
  }
};
function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}
function defaultKey(url, options) {
  const topics = [...options.topics ?? []].sort().join(",");
  const categories = [...options.categories ?? []].sort().join(",");
  return `livepush:last-event-id:${url}?topic=${topics}&category=${categories}`;
}
function parseRetryAfter(value) {
  if (value == null) return void 0;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1e3;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? void 0 : Math.max(0, at - Date.now());
}
function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

// ../../examples/chat/page.ts
var params = new URLSearchParams(location.search);
var room = params.get("room") ?? "lobby";
var user = params.get("user") ?? "guest";
var base = `/rooms/${encodeURIComponent(room)}`;
var byId = (id) => document.getElementById(id);
byId("room").textContent = room;
byId("user").textContent = user;
var status = byId("status");
function activity(text) {
  const li = document.createElement("li");
  li.textContent = text;
  byId("activity").prepend(li);
}
function showMembers(members) {
  byId("count").textContent = String(members.length);
  const list = byId("members");
  list.replaceChildren(
    ...members.map((m) => {
      const li = document.createElement("li");
      li.dataset.key = m.key;
      li.textContent = m.key;
      return li;
    })
  );
}
var sub = subscribe(`${base}/events?user=${encodeURIComponent(user)}`, {
  storage: null,
  onStatus: (s) => {
    status.dataset.state = s === "open" ? "connected" : s;
    status.textContent = s === "open" ? "connected" : s + "\u2026";
  }
});
trackMembers(sub, `room:${room}`, (members, change) => {
  showMembers(members);
  for (const m of change.joined) activity(`${m.key} joined`);
  for (const m of change.left) activity(`${m.key} left`);
});
sub.on("message", (m) => {
  const li = document.createElement("li");
  li.dataset.id = m.id;
  const who = document.createElement("span");
  who.className = "user";
  who.textContent = m.user;
  li.append(who, m.text);
  byId("messages").append(li);
});
sub.on("room_topic", (t) => {
  byId("topic").textContent = t.text;
});
async function send(path, method, body) {
  const response = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body)
  });
  if (!response.ok) activity(`refused: ${(await response.json()).message}`);
}
byId("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = byId("text");
  void send("/messages", "POST", { user, text: input.value });
  input.value = "";
});
byId("set-topic").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = byId("topic-text");
  void send("/topic", "PUT", { text: input.value });
  input.value = "";
});
