/**
 * The livepush client: a typed Server-Sent Events subscription that does what `EventSource`
 * does not.
 *
 * - typed handlers: `subscribe<Events>(url, { topics }).on("comment_created", (c) => …)`, with
 *   `Events` generated from the service's AsyncAPI document (`livepush-typescript`);
 * - resumes after the last id it saw, across reconnects and page reloads (sessionStorage), or
 *   after a list's `Livepush-Cursor` given as `lastEventId`;
 * - `livepush.reset` and `livepush.lagged` reach `onReset` / `onLagged` (reload your state);
 * - presence (`livepush.presence`, `livepush.join`, `livepush.leave`, `livepush.presence_diff`)
 *   is typed, and {@link trackMembers} keeps a topic's member list from it;
 * - retries after network errors, 429 (waiting out `Retry-After`) and 5xx, with exponential
 *   backoff and jitter, where `EventSource` gives up for good;
 * - `beforeConnect` refreshes credentials (headers) before every attempt: the transport is
 *   `fetch`, which can send headers, read the status and `Retry-After`;
 * - `state("room_topic")` keeps the current value of a state event (published with `retain`),
 *   which the server sends first on every new stream.
 *
 * No dependency beyond `fetch`, `ReadableStream` and `TextDecoder` (browsers, Node.js 20).
 */

import { SseParser, type SseFrame } from "./sse.js";

/** The notices every livepush stream may carry besides published events. */
export interface Notices {
  /** Events may have been missed: reload your state. The frame's id is where the stream resumes. */
  "livepush.reset": { reason: string; last_event_id?: number | string; lost?: number };
  /** This client read too slowly and `missed` events were dropped for it. */
  "livepush.lagged": { missed: number };
  /** The members of a topic, first on a stream that asked for presence events. */
  "livepush.presence": { topic: string; count: number; connections: number; members: PresenceMember[] };
  /** A member appeared on a topic (its first stream on any instance). */
  "livepush.join": { topic: string; key: string; info?: unknown };
  /** A member disappeared from a topic (its last stream ended, or its instance died). */
  "livepush.leave": { topic: string; key: string; info?: unknown };
  /** Several members came and went within one tick of the server (at most ~10 a second). */
  "livepush.presence_diff": {
    topic: string;
    joins: { key: string; info?: unknown }[];
    leaves: { key: string; info?: unknown }[];
  };
}

/** A member of a topic: its key, its open streams (in snapshots), the info its subscription gave. */
export interface PresenceMember {
  key: string;
  connections?: number;
  info?: unknown;
}

/** What changed in a topic's members, as {@link trackMembers} reports it. */
export interface MembersChange {
  /** Members that appeared (none on a snapshot, which replaces the list). */
  joined: PresenceMember[];
  /** Members that disappeared. */
  left: PresenceMember[];
  /** Whether the list was replaced by a snapshot (on every (re)connection). */
  snapshot: boolean;
}

/** The member list of one topic, kept by {@link trackMembers}. */
export interface Members {
  /** The members now, ordered by key. */
  readonly list: PresenceMember[];
  /** Stops tracking. */
  stop(): void;
}

/**
 * Keeps the member list of `topic` from the presence events of `sub` (a subscription whose
 * server asked for presence events): the snapshot on every connection replaces it, joins and
 * leaves update it, and `onChange` hears of each change.
 *
 * ```ts
 * const members = trackMembers(sub, "room:lobby", (list) => render(list));
 * ```
 */
export function trackMembers(
  sub: Subscription<object>,
  topic: string,
  onChange?: (members: PresenceMember[], change: MembersChange) => void,
): Members {
  const byKey = new Map<string, PresenceMember>();
  const list = () => [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const apply = (joins: PresenceMember[], leaves: PresenceMember[], snapshot: boolean) => {
    const joined: PresenceMember[] = [];
    const left: PresenceMember[] = [];
    if (snapshot) byKey.clear();
    for (const m of leaves) if (byKey.delete(m.key)) left.push(m);
    for (const m of joins) {
      if (!snapshot && !byKey.has(m.key)) joined.push(m);
      byKey.set(m.key, m);
    }
    onChange?.(list(), { joined, left, snapshot });
  };
  const typed = sub as Subscription<Notices>;
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
    }),
  ];
  return {
    get list() {
      return list();
    },
    stop: () => offs.forEach((off) => off()),
  };
}

/** What arrives with each event besides its data. */
export interface EventMeta {
  /** The SSE `id:` (absent on `livepush.lagged`). */
  id: string | undefined;
  /** The SSE `event:` name. */
  event: string;
}

/** Where a subscription stands. */
export type Status = "connecting" | "open" | "retrying" | "closed";

/** Details of a status change. */
export interface StatusDetail {
  /** The HTTP status of a refused attempt. */
  httpStatus?: number;
  /** How long until the next attempt, in milliseconds. */
  delayMs?: number;
  /** The network or protocol error of a failed attempt. */
  error?: unknown;
}

/** Passed to `beforeConnect`. */
export interface ConnectAttempt {
  /** Attempts since the last successful connection (0 for the first). */
  attempt: number;
  /** The id the attempt resumes after, if any. */
  lastEventId: string | undefined;
  /** The HTTP status that refused the previous attempt (such as 401), if any. */
  previousStatus: number | undefined;
}

/** The part of `Storage` the client uses; `sessionStorage` fits. */
export interface IdStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** Backoff between attempts: `min(maxMs, initialMs * 2^attempt)`, then jittered. */
export interface RetryOptions {
  /** First delay (default: the server's `retry:` hint, else 500 ms). */
  initialMs?: number;
  /** Longest delay (default 30 s). */
  maxMs?: number;
  /** Share of each delay drawn at random, 0 to 1 (default 0.5: between half and all of it). */
  jitter?: number;
}

/** Options of {@link subscribe}. */
export interface SubscribeOptions {
  /** Topics, sent as `?topic=a,b` (leave out for endpoints whose handler chooses the topics). */
  topics?: string[];
  /** Only events of these categories, sent as `?category=`. */
  categories?: string[];
  /**
   * Start after this id: a list's `Livepush-Cursor`, for example. Wins over the id stored by an
   * earlier page of this tab; leave it out to resume from that one.
   */
  lastEventId?: string | null;
  /** Where the last id survives reloads (default `sessionStorage` when there is one; `null`: nowhere). */
  storage?: IdStorage | null;
  /** The storage key (default: derived from the URL, topics and categories). */
  storageKey?: string;
  /** Headers of every attempt. */
  headers?: Record<string, string>;
  /** Called before every attempt; headers it returns are added (fresh credentials, say). */
  beforeConnect?: (
    attempt: ConnectAttempt,
  ) => Record<string, string> | void | Promise<Record<string, string> | void>;
  /** A `livepush.reset` arrived: reload the state the events apply to. */
  onReset?: (reset: Notices["livepush.reset"], meta: EventMeta) => void;
  /** A `livepush.lagged` arrived: events were dropped for this slow client. */
  onLagged?: (lagged: Notices["livepush.lagged"], meta: EventMeta) => void;
  /** The subscription changed status. */
  onStatus?: (status: Status, detail: StatusDetail) => void;
  /** A handler threw, or a frame's data was not JSON. */
  onError?: (error: unknown) => void;
  /** Backoff settings. */
  retry?: RetryOptions;
  /** The `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
}

/** Handler of one event. */
export type Handler<T> = (data: T, meta: EventMeta) => void;

/**
 * The current value of a state event (one the service publishes with `retain`, marked `state`
 * in its AsyncAPI document): the server sends the current value first on every new stream, so
 * `value` is set as soon as the stream opens, then follows every update. With `keyOf`, one
 * value per key (a service that retains per key: `Retain::key`, `retain_key`).
 */
export interface StateView<T> {
  /** The newest value (of any key), or `undefined` before the first one. */
  readonly value: T | undefined;
  /** The id of the newest value. */
  readonly id: string | undefined;
  /** The newest value of each key (one entry, key `""`, without `keyOf`). */
  readonly values: ReadonlyMap<string, T>;
  /** Calls `handler` with every new value; answers a function that removes it. */
  onChange(handler: Handler<T>): () => void;
}

/** Options of {@link Subscription.state}. */
export interface StateOptions<T> {
  /** The key of a value (default: one value, key `""`). */
  keyOf?: (value: T) => string;
}

/** A running subscription. */
export interface Subscription<E> {
  /** Calls `handler` for every event named `event`; answers a function that removes it. */
  on<K extends keyof (E & Notices) & string>(event: K, handler: Handler<(E & Notices)[K]>): () => void;
  /** The current value of the state event `event`, kept up to date (see {@link StateView}). */
  state<K extends keyof E & string>(event: K, options?: StateOptions<E[K]>): StateView<E[K]>;
  /** The id of the last event received (what the next attempt resumes after). */
  readonly lastEventId: string | undefined;
  /** Where the subscription stands. */
  readonly status: Status;
  /** Resolves once the stream is first open. */
  readonly opened: Promise<void>;
  /** Ends the subscription for good. */
  close(): void;
}

/** Statuses that are worth another attempt without new credentials. */
const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

/**
 * Subscribes to `url` (an SSE endpoint such as `/events`) and keeps the subscription alive
 * until `close()`.
 *
 * ```ts
 * import { subscribe } from "@livepush/client";
 * import type { Events } from "./events.gen";
 *
 * const sub = subscribe<Events>("/events", { topics: ["comments"], onReset: reload });
 * sub.on("comment_created", (comment) => show(comment));
 * ```
 */
export function subscribe<E extends object = Record<string, unknown>>(
  url: string,
  options: SubscribeOptions = {},
): Subscription<E> {
  return new LivepushSubscription<E>(url, options);
}

class LivepushSubscription<E extends object> implements Subscription<E> {
  private readonly handlers = new Map<string, Set<Handler<never>>>();
  private readonly abort = new AbortController();
  private readonly storage: IdStorage | null;
  private readonly storageKey: string;
  private lastId: string | undefined;
  private serverRetryMs: number | undefined;
  private current: Status = "connecting";
  private markOpened!: () => void;
  readonly opened: Promise<void>;

  constructor(
    private readonly url: string,
    private readonly options: SubscribeOptions,
  ) {
    this.opened = new Promise((resolve) => (this.markOpened = resolve));
    this.storage = options.storage === undefined ? defaultStorage() : options.storage;
    this.storageKey = options.storageKey ?? defaultKey(url, options);
    this.lastId = options.lastEventId ?? this.read() ?? undefined;
    if (options.lastEventId != null) this.remember(options.lastEventId);
    void this.run();
  }

  get lastEventId(): string | undefined {
    return this.lastId;
  }

  get status(): Status {
    return this.current;
  }

  on<K extends keyof (E & Notices) & string>(event: K, handler: Handler<(E & Notices)[K]>): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(handler as Handler<never>);
    return () => set.delete(handler as Handler<never>);
  }

  state<K extends keyof E & string>(event: K, options: StateOptions<E[K]> = {}): StateView<E[K]> {
    const view = new CurrentState<E[K]>(options.keyOf);
    this.on(event as keyof (E & Notices) & string, ((data: E[K], meta: EventMeta) => view.apply(data, meta)) as never);
    return view;
  }

  close(): void {
    if (this.current === "closed") return;
    this.abort.abort();
    this.setStatus("closed", {});
  }

  private setStatus(status: Status, detail: StatusDetail): void {
    if (this.current === "closed") return;
    this.current = status;
    this.options.onStatus?.(status, detail);
  }

  private async run(): Promise<void> {
    const fetchFn = this.options.fetch ?? globalThis.fetch.bind(globalThis);
    let attempt = 0;
    let previousStatus: number | undefined;
    while (!this.abort.signal.aborted) {
      let delay: number;
      const detail: StatusDetail = {};
      try {
        const extra = await this.options.beforeConnect?.({
          attempt,
          lastEventId: this.lastId,
          previousStatus,
        });
        const headers: Record<string, string> = {
          accept: "text/event-stream",
          ...this.options.headers,
          ...(extra ?? {}),
        };
        if (this.lastId !== undefined) headers["last-event-id"] = this.lastId;
        this.setStatus("connecting", {});
        const response = await fetchFn(this.requestUrl(), {
          headers,
          signal: this.abort.signal,
          cache: "no-store",
        });
        previousStatus = response.status;
        if (response.ok && response.body) {
          attempt = 0;
          previousStatus = undefined;
          this.setStatus("open", {});
          this.markOpened();
          await this.readStream(response.body);
          // The server ended the stream (a restart, a shutdown): come back soon.
          delay = this.backoff(0);
        } else {
          detail.httpStatus = response.status;
          const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
          void response.body?.cancel().catch(() => {});
          const credentials = (response.status === 401 || response.status === 403) && this.options.beforeConnect;
          if (!RETRYABLE.has(response.status) && !credentials) {
            this.options.onError?.(new Error(`${this.url} answered ${response.status}`));
            this.setStatus("closed", detail);
            return;
          }
          // Never before the server's Retry-After; a little later, so refused clients spread out.
          delay =
            retryAfter === undefined ? this.backoff(attempt) : retryAfter + this.jitterUpTo(retryAfter * 0.1 + 50);
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

  private requestUrl(): string {
    const params: string[] = [];
    if (this.options.topics?.length) params.push("topic=" + encodeURIComponent(this.options.topics.join(",")));
    if (this.options.categories?.length)
      params.push("category=" + encodeURIComponent(this.options.categories.join(",")));
    if (params.length === 0) return this.url;
    return this.url + (this.url.includes("?") ? "&" : "?") + params.join("&");
  }

  /** Reads the stream until it ends (or the subscription is closed). */
  private async readStream(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    const parser = new SseParser({
      frame: (frame) => this.frame(frame),
      retry: (ms) => (this.serverRetryMs = ms),
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

  private frame(frame: SseFrame): void {
    // A handler may have closed the subscription on an earlier frame of the same chunk.
    if (this.abort.signal.aborted) return;
    if (frame.id !== undefined) this.lastId = frame.id;
    if (frame.data !== undefined) this.dispatch(frame.event, frame.data, frame.id);
    else if (frame.id !== undefined) this.remember(frame.id);
  }

  private dispatch(event: string, raw: string, id: string | undefined): void {
    const meta: EventMeta = { id, event };
    let data: unknown;
    try {
      data = JSON.parse(raw);
    } catch (error) {
      this.options.onError?.(error);
      data = raw;
    }
    try {
      if (event === "livepush.reset") this.options.onReset?.(data as Notices["livepush.reset"], meta);
      if (event === "livepush.lagged") this.options.onLagged?.(data as Notices["livepush.lagged"], meta);
      for (const handler of this.handlers.get(event) ?? []) (handler as Handler<unknown>)(data, meta);
    } catch (error) {
      this.options.onError?.(error);
    }
    // Stored after the handlers ran: a reload resumes after the last event the page applied.
    if (id !== undefined) this.remember(id);
  }

  private backoff(attempt: number): number {
    const retry = this.options.retry ?? {};
    const initial = retry.initialMs ?? this.serverRetryMs ?? 500;
    const max = retry.maxMs ?? 30_000;
    const jitter = Math.min(1, Math.max(0, retry.jitter ?? 0.5));
    const base = Math.min(max, initial * 2 ** Math.min(attempt, 20));
    return base * (1 - jitter) + this.jitterUpTo(base * jitter);
  }

  private jitterUpTo(ms: number): number {
    return Math.random() * ms;
  }

  private read(): string | null {
    try {
      return this.storage?.getItem(this.storageKey) ?? null;
    } catch {
      return null; // storage disabled (private mode, sandboxed frame)
    }
  }

  private remember(id: string): void {
    this.lastId = id;
    try {
      this.storage?.setItem(this.storageKey, id);
    } catch {
      // a full or disabled storage only loses the resume-after-reload
    }
  }
}

/** A {@link StateView} fed by one event's handler. */
class CurrentState<T> implements StateView<T> {
  private readonly byKey = new Map<string, T>();
  private readonly handlers = new Set<Handler<T>>();
  private newest: T | undefined;
  private newestId: string | undefined;

  constructor(private readonly keyOf?: (value: T) => string) {}

  get value(): T | undefined {
    return this.newest;
  }

  get id(): string | undefined {
    return this.newestId;
  }

  get values(): ReadonlyMap<string, T> {
    return this.byKey;
  }

  onChange(handler: Handler<T>): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  apply(data: T, meta: EventMeta): void {
    // The server sends values in id order (a value sent again after a reset is the same one),
    // so the last one received is the current one.
    this.byKey.set(this.keyOf ? this.keyOf(data) : "", data);
    this.newest = data;
    this.newestId = meta.id;
    for (const handler of this.handlers) handler(data, meta);
  }
}

function defaultStorage(): IdStorage | null {
  try {
    return (globalThis as { sessionStorage?: IdStorage }).sessionStorage ?? null;
  } catch {
    return null;
  }
}

function defaultKey(url: string, options: SubscribeOptions): string {
  const topics = [...(options.topics ?? [])].sort().join(",");
  const categories = [...(options.categories ?? [])].sort().join(",");
  return `livepush:last-event-id:${url}?topic=${topics}&category=${categories}`;
}

/** `Retry-After` in milliseconds: delay-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (value == null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
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
