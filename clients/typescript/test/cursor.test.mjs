// Load-then-subscribe: a list's Livepush-Cursor given as lastEventId, while a writer keeps posting.
import { test } from "node:test";
import assert from "node:assert/strict";
import { subscribe } from "../dist/index.js";
import { post, sleep, startExample, until } from "./support.mjs";

/** What a page does: load the list, subscribe from its cursor, apply events by id. */
async function loadAndSubscribe(url) {
  const response = await fetch(url("/comments"));
  const cursor = response.headers.get("livepush-cursor");
  assert.match(cursor ?? "", /^\d+$/, "GET /comments carries a Livepush-Cursor");
  const rows = await response.json(); // what a page renders, in order
  // repeated: events of comments the page already showed (the cursor is exact: none)
  const view = { rows, resets: 0, repeated: [], sub: undefined };
  const index = () => new Set(view.rows.map((c) => c.id));
  view.sub = subscribe(url("/events"), {
    topics: ["comments"],
    lastEventId: cursor,
    storage: null,
    onReset: () => (view.resets += 1),
  });
  // A page appends a created comment it does not show yet and replaces one it does.
  view.sub.on("comment_created", (c) => {
    if (index().has(c.id)) {
      view.repeated.push(c.id);
      view.rows = view.rows.map((r) => (r.id === c.id ? c : r));
    } else view.rows.push(c);
  });
  return view;
}

for (const [name, env] of [
  ["replay on", { LIVEPUSH_REPLAY: "1000" }],
  ["replay off: a reset when the cursor cannot be honoured", {}],
]) {
  test(`100 comments posted while clients load and subscribe: each list equals the database (${name})`, async (t) => {
    const server = await startExample("crm_comments", env);
    t.after(() => server.stop());
    const writer = (async () => {
      for (let i = 0; i < 100; i++) {
        await Promise.all([post(server.url, `c${i}a`), i % 3 === 0 ? post(server.url, `c${i}b`) : null]);
      }
    })();
    const views = [];
    for (let k = 0; k < 8; k++) {
      views.push(await loadAndSubscribe(server.url));
      await sleep(15);
    }
    await writer;
    const database = await (await fetch(server.url("/comments"))).json();
    for (const [k, view] of views.entries()) {
      t.after(() => view.sub.close());
      if (view.resets > 0) continue; // told to reload: the page loads the list again
      await until(`view ${k} catches up`, () => view.rows.length >= database.length, 10_000);
      const ids = view.rows.map((c) => c.id);
      assert.equal(new Set(ids).size, ids.length, `view ${k}: no duplicate`);
      assert.deepEqual(view.repeated, [], `view ${k}: no event of a comment its list held`);
      assert.deepEqual([...view.rows].sort((a, b) => a.id - b.id), database, `view ${k} equals the database`);
    }
    const honoured = views.filter((v) => v.resets === 0).length;
    if (env.LIVEPUSH_REPLAY) assert.equal(honoured, views.length, "with replay no cursor needs a reset");
    else assert.ok(views.some((v) => v.resets > 0), "without replay a cursor behind the stream is reset");
  });
}
