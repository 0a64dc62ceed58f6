// trackMembers against a real chat server (the binary cargo built): one page sees another join
// and leave, tabs count once, and a reconnect brings a fresh snapshot.
import { test } from "node:test";
import assert from "node:assert/strict";
import { subscribe, trackMembers } from "../dist/index.js";
import { startExample, until } from "./support.mjs";

test("trackMembers keeps the room's members from the presence events", async (t) => {
  const server = await startExample("chat", { LIVEPUSH_PRESENCE_GRACE_MS: "100" });
  t.after(() => server.stop());
  const url = (user) => server.url(`/rooms/lobby/events?user=${user}`);
  const ann = subscribe(url("ann"), { storage: null });
  t.after(() => ann.close());
  const changes = [];
  const members = trackMembers(ann, "room:lobby", (list, change) =>
    changes.push({ keys: list.map((m) => m.key), joined: change.joined.map((m) => m.key), left: change.left.map((m) => m.key), snapshot: change.snapshot }),
  );
  await until("the snapshot", () => changes.length === 1);
  assert.deepEqual(changes[0], { keys: ["ann"], joined: [], left: [], snapshot: true });
  assert.deepEqual(members.list[0].info, { name: "ann" });

  const bob1 = subscribe(url("bob"), { storage: null });
  const bob2 = subscribe(url("bob"), { storage: null });
  await bob1.opened;
  await bob2.opened;
  await until("bob joined", () => members.list.length === 2);
  assert.deepEqual(members.list.map((m) => m.key), ["ann", "bob"]);
  assert.deepEqual(changes.at(-1), { keys: ["ann", "bob"], joined: ["bob"], left: [], snapshot: false });
  const presence = await (await fetch(server.url("/rooms/lobby/presence"))).json();
  assert.deepEqual(presence, {
    count: 2,
    connections: 3,
    members: [
      { key: "ann", connections: 1, info: { name: "ann" } },
      { key: "bob", connections: 2, info: { name: "bob" } },
    ],
  });

  bob1.close();
  bob2.close();
  await until("bob left", () => members.list.length === 1);
  assert.deepEqual(changes.at(-1), { keys: ["ann"], joined: [], left: ["bob"], snapshot: false });
  // two tabs: one join, one leave
  assert.equal(changes.filter((c) => c.joined.includes("bob")).length, 1);
  assert.equal(changes.filter((c) => c.left.includes("bob")).length, 1);
  members.stop();
});
