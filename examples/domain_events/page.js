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
    const params = [];
    if (this.options.topics?.length) params.push("topic=" + encodeURIComponent(this.options.topics.join(",")));
    if (this.options.categories?.length)
      params.push("category=" + encodeURIComponent(this.options.categories.join(",")));
    if (params.length === 0) return this.url;
    return this.url + (this.url.includes("?") ? "&" : "?") + params.join("&");
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
    const base = Math.min(max, initial * 2 ** Math.min(attempt, 20));
    return base * (1 - jitter) + this.jitterUpTo(base * jitter);
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

// ../../examples/domain_events/page.ts
var user = Number(new URLSearchParams(location.search).get("user") ?? "7");
var status = document.getElementById("status");
var log = document.getElementById("log");
document.getElementById("user").textContent = String(user);
function show(text, meta) {
  const li = document.createElement("li");
  li.dataset.id = meta.id ?? "";
  const name = document.createElement("span");
  name.className = "event";
  name.textContent = meta.event;
  li.append(name, text);
  log.prepend(li);
}
var sub = subscribe(`/users/${user}/events`, {
  onStatus: (s) => {
    status.dataset.state = s === "open" ? "connected" : s;
    status.textContent = s === "open" ? "connected" : s + "\u2026";
  },
  onReset: (reset, meta) => show(`some notifications may be missing (${reset.reason})`, meta)
});
sub.on("sync.completed", (e, meta) => show(`${e.accounts} accounts synced at ${e.finished_at}`, meta));
sub.on("invoice.paid", (e, meta) => show(`invoice ${e.invoice_id}: ${(e.amount_cents / 100).toFixed(2)} paid`, meta));
sub.on("maintenance.scheduled", (e, meta) => show(`maintenance in ${e.minutes} minutes`, meta));
