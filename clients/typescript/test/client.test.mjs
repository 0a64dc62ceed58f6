// The client against a real crm_comments server (the binary cargo built).
import { test } from "node:test";
import assert from "node:assert/strict";
import { subscribe, parseRetryAfter } from "../dist/index.js";
import { post, ready, sleep, startExample, startRedis, until } from "./support.mjs";

const quick = { initialMs: 100, maxMs: 500 };

test("resumes after the server restarts with no event lost (Redis, replay on)", async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const env = { REDIS_URL: redis.url, LIVEPUSH_REPLAY: "1000" };
  let server = await startExample("crm_comments", env);
  // A second instance on the same Redis takes the comments while the first is down.
  const other = await startExample("crm_comments", env);
  t.after(() => other.stop());
  await ready(server);
  await ready(other);
  const port = server.port;
  const seen = [];
  const sub = subscribe(server.url("/events"), { topics: ["comments"], retry: quick, storage: null });
  t.after(() => sub.close());
  sub.on("comment_created", (c) => seen.push(c.text));
  await sub.opened;
  for (let i = 0; i < 5; i++) await post(server.url, `before ${i}`);
  await until("five live comments", () => seen.length === 5);

  await server.stop();
  await until("the client notices the restart", () => sub.status === "retrying");
  for (let i = 0; i < 5; i++) await post(other.url, `while down ${i}`);
  server = await startExample("crm_comments", env, port);
  t.after(() => server.stop());
  await ready(server);
  await until("the comments posted while it was down", () => seen.length >= 10);
  for (let i = 0; i < 3; i++) await post(server.url, `after ${i}`);
  await until("the live ones after the restart", () => seen.length >= 13);
  await sleep(200);
  assert.deepEqual(seen, [
    ...[0, 1, 2, 3, 4].map((i) => `before ${i}`),
    ...[0, 1, 2, 3, 4].map((i) => `while down ${i}`),
    ...[0, 1, 2].map((i) => `after ${i}`),
  ]);
});

test("429: waits out Retry-After and connects once a slot is free", async (t) => {
  const server = await startExample("crm_comments", { LIVEPUSH_MAX_CONNECTIONS: "1" });
  t.after(() => server.stop());
  const first = subscribe(server.url("/events"), { topics: ["comments"], storage: null });
  await first.opened;
  const refusals = [];
  const second = subscribe(server.url("/events"), {
    topics: ["comments"],
    storage: null,
    retry: quick,
    onStatus: (status, detail) => {
      if (status === "retrying" && detail.httpStatus === 429) refusals.push({ at: Date.now(), delay: detail.delayMs });
    },
  });
  t.after(() => second.close());
  await until("a 429", () => refusals.length > 0);
  // The server says Retry-After: 5; the client waits at least that, where its own backoff is 100 ms.
  assert.ok(refusals[0].delay >= 5000, `waited ${refusals[0].delay} ms`);
  first.close();
  const freed = Date.now();
  await until("the second subscription opens", () => second.status === "open", 15_000);
  assert.ok(Date.now() - refusals[0].at >= 5000, "connected before Retry-After passed");
  assert.ok(Date.now() - freed < 10_000);
  const got = [];
  second.on("comment_created", (c) => got.push(c.text));
  await post(server.url, "hello");
  await until("the event on the second subscription", () => got.length === 1);
});

test("the reset callback fires when the history cannot vouch for the id", async (t) => {
  const server = await startExample("crm_comments", { LIVEPUSH_REPLAY: "100" });
  t.after(() => server.stop());
  const resets = [];
  const sub = subscribe(server.url("/events"), {
    topics: ["comments"],
    storage: null,
    lastEventId: "1", // from long before this process started
    onReset: (reset, meta) => resets.push({ reset, id: meta.id }),
  });
  t.after(() => sub.close());
  await until("a reset", () => resets.length === 1);
  assert.equal(resets[0].reset.reason, "history_unavailable");
  assert.equal(sub.lastEventId, resets[0].id, "the client resumes from the reset's id");
  const got = [];
  sub.on("comment_created", (c) => got.push(c.text));
  await post(server.url, "after the reset");
  await until("live events after the reset", () => got.length === 1);
});

test("the last id survives in the given storage and is sent again", async (t) => {
  const server = await startExample("crm_comments", { LIVEPUSH_REPLAY: "100" });
  t.after(() => server.stop());
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  const first = subscribe(server.url("/events"), { topics: ["comments"], storage });
  await first.opened;
  const seen = [];
  first.on("comment_created", (c) => seen.push(c.text));
  await post(server.url, "one");
  await until("one", () => seen.length === 1);
  first.close(); // the page goes away
  await post(server.url, "two");
  const again = subscribe(server.url("/events"), { topics: ["comments"], storage }); // the page is back
  t.after(() => again.close());
  const replayed = [];
  again.on("comment_created", (c) => replayed.push(c.text));
  await until("two, replayed after the stored id", () => replayed.length === 1);
  await sleep(200);
  assert.deepEqual(replayed, ["two"]);
});

test("Retry-After: seconds and HTTP dates", () => {
  assert.equal(parseRetryAfter("5"), 5000);
  assert.equal(parseRetryAfter(null), undefined);
  const soon = parseRetryAfter(new Date(Date.now() + 3000).toUTCString());
  assert.ok(soon > 1000 && soon <= 3000, String(soon));
});

test("beforeConnect refreshes credentials after a 401 and the stream opens", async (t) => {
  const server = await startExample("tickets");
  t.after(() => server.stop());
  const asked = [];
  const sub = subscribe(server.url("/events"), {
    topics: ["ticket:1"],
    storage: null,
    retry: quick,
    // The first token has expired; after the 401 a fresh one is fetched.
    beforeConnect: ({ previousStatus }) => {
      asked.push(previousStatus);
      return { authorization: `Bearer ${previousStatus === 401 ? "alice-token" : "expired-token"}` };
    },
  });
  t.after(() => sub.close());
  await sub.opened;
  assert.deepEqual(asked, [undefined, 401]);
});
