// Load-then-subscribe: a list's Livepush-Cursor given as lastEventId, while a writer keeps posting.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { subscribe } from "../dist/index.js";
import { post, startExample, until } from "./support.mjs";

/**
 * What a page does (examples/crm_comments/page.ts): load the list, subscribe from its cursor,
 * apply events by id; on a reset, close, load again and subscribe from the new cursor.
 * `between` runs between loading the list and subscribing (a write there puts the cursor behind
 * the stream).
 */
function page(url, between = async () => {}) {
  const view = { rows: [], firstLoad: undefined, loads: 0, resets: 0, repeated: [], sub: undefined };
  const start = async () => {
    view.sub?.close();
    const response = await fetch(url("/comments"));
    const cursor = response.headers.get("livepush-cursor");
    assert.match(cursor ?? "", /^\d+$/, "GET /comments carries a Livepush-Cursor");
    const rows = await response.json();
    view.rows = rows;
    view.loads += 1;
    view.firstLoad ??= rows.length;
    const held = new Set(rows.map((c) => c.id)); // what this load showed
    await between();
    between = async () => {};
    const sub = subscribe(url("/events"), {
      topics: ["comments"],
      lastEventId: cursor,
      storage: null,
      onReset: () => {
        view.resets += 1;
        view.restarting = start();
      },
    });
    // A page appends a created comment it does not show yet and replaces one it does; an event
    // of a comment this load already held means the cursor was not exact.
    sub.on("comment_created", (c) => {
      if (held.has(c.id)) view.repeated.push(c.id);
      if (view.rows.some((r) => r.id === c.id)) view.rows = view.rows.map((r) => (r.id === c.id ? c : r));
      else view.rows.push(c);
    });
    view.sub = sub;
  };
  view.started = start();
  return view;
}

const ROUNDS = 10;
const PAGES = 8;

for (const [name, env] of [
  ["replay on", { LIVEPUSH_REPLAY: "1000" }],
  ["replay off: a reset when the cursor cannot be honoured", {}],
]) {
  test(`comments posted while pages load and subscribe: each page ends equal to the database (${name})`, async (t) => {
    // A database of its own: the example's default file would keep the comments of earlier runs.
    const dir = mkdtempSync(join(tmpdir(), "livepush-cursor-test-"));
    const server = await startExample("crm_comments", { ...env, DATABASE_URL: `sqlite://${dir}/comments.db?mode=rwc` });
    t.after(async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const round = (r) =>
      Promise.all(Array.from({ length: 12 }, (_, i) => post(server.url, `r${r}c${i}`)));
    // Page k loads and subscribes while round k's twelve posts are in flight; rounds after the
    // last page are posted once every page is subscribed, so each page must take the comments
    // posted after its list over the stream. The first page posts one comment between its load
    // and its subscription and waits until the relay has published it (an observer sees it): its
    // cursor is behind the stream for certain.
    const between = async () => {
      const seen = [];
      const observer = subscribe(server.url("/events"), { topics: ["comments"], storage: null });
      observer.on("comment_created", (c) => seen.push(c.id));
      await observer.opened;
      const { id } = await post(server.url, "between load and subscribe");
      await until("the comment posted between load and subscribe is published", () => seen.includes(id), 20_000);
      observer.close();
    };
    const views = [];
    for (let r = 0; r < ROUNDS; r++) {
      if (r < PAGES) {
        const view = page(server.url, r === 0 ? between : undefined);
        views.push(view);
        t.after(() => view.sub?.close());
        await Promise.all([round(r), view.started]);
      } else await round(r);
    }
    const database = await (await fetch(server.url("/comments"))).json();
    assert.equal(database.length, ROUNDS * 12 + 1, "every post is in the database");
    for (const [k, view] of views.entries()) {
      assert.ok(view.firstLoad < database.length, `page ${k} loaded before later writes`);
      await until(`page ${k} catches up`, () => view.rows.length >= database.length, 20_000);
      await view.restarting;
      await until(`page ${k} catches up after its last load`, () => view.rows.length >= database.length, 20_000);
      const ids = view.rows.map((c) => c.id);
      assert.equal(new Set(ids).size, ids.length, `page ${k}: no duplicate`);
      assert.deepEqual(view.repeated, [], `page ${k}: no event of a comment its list held`);
      assert.deepEqual([...view.rows].sort((a, b) => a.id - b.id), database, `page ${k} equals the database`);
    }
    const resets = views.map((v) => v.resets);
    if (env.LIVEPUSH_REPLAY) assert.deepEqual(resets, Array(PAGES).fill(0), "with replay no cursor needs a reset");
    else assert.ok(resets[0] > 0, `without replay the cursor behind the stream is reset (resets: ${resets})`);
  });
}
