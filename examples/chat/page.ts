// The chat page: messages, the members of the room, who joined and left, and the topic line.
//
// `?user=` is the demo's stand-in for authentication (see examples/chat/main.rs).
import { subscribe, trackMembers, type PresenceMember } from "@livepush/client";

interface Events {
  message: { id: string; user: string; text: string; at: string };
  room_topic: { text: string };
}

const params = new URLSearchParams(location.search);
const room = params.get("room") ?? "lobby";
const user = params.get("user") ?? "guest";
const base = `/rooms/${encodeURIComponent(room)}`;
const byId = (id: string) => document.getElementById(id) as HTMLElement;
byId("room").textContent = room;
byId("user").textContent = user;
const status = byId("status");

function activity(text: string): void {
  const li = document.createElement("li");
  li.textContent = text;
  byId("activity").prepend(li);
}

function showMembers(members: PresenceMember[]): void {
  byId("count").textContent = String(members.length);
  const list = byId("members");
  list.replaceChildren(
    ...members.map((m) => {
      const li = document.createElement("li");
      li.dataset.key = m.key;
      li.textContent = m.key;
      return li;
    }),
  );
}

// No resuming across reloads: the room's presence and topic come first on every connection.
const sub = subscribe<Events>(`${base}/events?user=${encodeURIComponent(user)}`, {
  storage: null,
  onStatus: (s) => {
    status.dataset.state = s === "open" ? "connected" : s;
    status.textContent = s === "open" ? "connected" : s + "…";
  },
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

async function send(path: string, method: string, body: unknown): Promise<void> {
  const response = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) activity(`refused: ${(await response.json()).message}`);
}

byId("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = byId("text") as HTMLInputElement;
  void send("/messages", "POST", { user, text: input.value });
  input.value = "";
});
byId("set-topic").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = byId("topic-text") as HTMLInputElement;
  void send("/topic", "PUT", { text: input.value });
  input.value = "";
});
