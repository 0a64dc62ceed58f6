// State events against a real bench_server (the binary cargo built): `POST /state?topic=T`
// publishes a value retained as T's current value, which the client's `state()` view has as soon
// as the stream opens, in memory and through Redis.
import { test } from "node:test";
import assert from "node:assert/strict";
import { subscribe } from "../dist/index.js";
import { ready, startExample, startRedis, until } from "./support.mjs";

async function setState(server, topic, body) {
  const response = await fetch(server.url(`/state?topic=${topic}`), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200);
}

for (const broker of ["memory", "redis"]) {
  test(`state(): the current value first, then every update (${broker})`, async (t) => {
    let env = {};
    if (broker === "redis") {
      const redis = await startRedis();
      t.after(() => redis.stop());
      env = { REDIS_URL: redis.url };
    }
    const server = await startExample("bench_server", env);
    t.after(() => server.stop());
    await ready(server);
    await setState(server, "tile", { n: 1 });
    await setState(server, "tile", { n: 2 });
    const sub = subscribe(server.url("/events"), { topics: ["tile"], storage: null });
    t.after(() => sub.close());
    const tile = sub.state("state");
    const changes = [];
    tile.onChange((value, meta) => changes.push([value.n, meta.id]));
    await sub.opened;
    await until("the current value", () => tile.value !== undefined);
    assert.deepEqual(tile.value, { n: 2 });
    assert.equal(tile.id, sub.lastEventId);
    await setState(server, "tile", { n: 3 });
    await until("the update", () => tile.value?.n === 3);
    assert.deepEqual(
      changes.map(([n]) => n),
      [2, 3],
      "the older value never arrives",
    );
    assert.ok(BigInt(changes[1][1]) > BigInt(changes[0][1]), "ids rise");
    assert.deepEqual([...tile.values.keys()], [""]);
  });
}

test("state() with keyOf keeps one value per key", async (t) => {
  const server = await startExample("bench_server", {});
  t.after(() => server.stop());
  await ready(server);
  const sub = subscribe(server.url("/events"), { topics: ["jobs"], storage: null });
  t.after(() => sub.close());
  const jobs = sub.state("state", { keyOf: (job) => job.id });
  await sub.opened;
  await setState(server, "jobs", { id: "a", done: 10 });
  await setState(server, "jobs", { id: "b", done: 20 });
  await setState(server, "jobs", { id: "a", done: 30 });
  await until("three updates", () => jobs.values.get("a")?.done === 30);
  assert.deepEqual(Object.fromEntries(jobs.values), { a: { id: "a", done: 30 }, b: { id: "b", done: 20 } });
  assert.deepEqual(jobs.value, { id: "a", done: 30 });
});
