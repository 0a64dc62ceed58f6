// The crm_comments page: the list from GET /comments, kept live by the livepush client.
//
// Bundled with the client into page.js by `npm run build:pages` (clients/typescript); the types
// come from /events/asyncapi.json through livepush-typescript (events.gen.ts).
import { subscribe, type Status, type Subscription } from "@livepush/client";
import type { Comment, Events } from "./events.gen";

// Comments by id: the list, then every event applied on top of it.
let comments = new Map<number, Comment>();
let subscription: Subscription<Events> | undefined;

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from the page`);
  return element as T;
};

const LABELS: Record<Status, [string, string]> = {
  connecting: ["connecting", "connecting…"],
  open: ["connected", "connected"],
  retrying: ["reconnecting", "reconnecting…"],
  closed: ["disconnected", "disconnected"],
};

function setStatus(status: Status): void {
  const [state, label] = LABELS[status];
  $("status").dataset.state = state;
  $("status").textContent = label;
}

function showError(message = ""): void {
  $("error").textContent = message;
}

function render(): void {
  const items = [...comments.values()].sort((a, b) => b.id - a.id); // newest first
  $("comments").replaceChildren(...items.map(item));
  $("empty").hidden = items.length > 0;
}

function item(c: Comment): HTMLLIElement {
  const li = document.createElement("li");
  li.dataset.id = String(c.id);
  const meta = document.createElement("div");
  meta.className = "meta";
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = c.author;
  const when = document.createElement("time");
  when.dateTime = c.updated_at ?? c.created_at;
  when.textContent = new Date(when.dateTime).toLocaleTimeString() + (c.updated_at ? " (edited)" : "");
  const actions = document.createElement("span");
  actions.className = "actions";
  actions.append(button("edit", () => edit(c)), button("delete", () => remove(c.id)));
  meta.append(author, when, actions);
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = c.text;
  li.append(meta, text);
  return li;
}

function button(label: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "link " + label;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

// Events are applied by id (upsert, delete), so one that the list already reflects changes nothing.
function upsert(comment: Comment): void {
  comments.set(comment.id, comment);
  render();
}

function drop(comment: Comment): void {
  comments.delete(comment.id);
  render();
}

/** Loads the list and answers its Livepush-Cursor: where the stream stood when it was read. */
async function load(): Promise<string | null> {
  const response = await fetch("/comments", { headers: { accept: "application/json" } });
  if (!response.ok) throw new Error("GET /comments answered " + response.status);
  const list = (await response.json()) as Comment[];
  comments = new Map(list.map((c) => [c.id, c]));
  render();
  return response.headers.get("livepush-cursor");
}

/**
 * The list, then the stream from the list's cursor: what was published in between arrives over
 * the stream, nothing is missed and nothing is applied twice. Run again after a reset.
 */
async function start(): Promise<void> {
  subscription?.close();
  let cursor: string | null;
  try {
    cursor = await load();
  } catch (error) {
    showError("Could not load comments: " + (error as Error).message);
    setTimeout(start, 3000);
    return;
  }
  await testHold();
  const sub = subscribe<Events>("/events", {
    topics: ["comments"],
    lastEventId: cursor,
    onStatus: setStatus,
    // The server could not replay what came after our position: the list may be stale.
    onReset: () => void start(),
    onLagged: () => void start(),
  });
  sub.on("comment_created", upsert);
  sub.on("comment_updated", upsert);
  sub.on("comment_deleted", drop);
  subscription = sub;
}

/**
 * A seam for the browser test: with `#hold` in the URL, the page waits between loading the list
 * and subscribing until `crmRelease()` is called, so a comment can be posted in between.
 */
function testHold(): Promise<void> {
  if (location.hash !== "#hold") return Promise.resolve();
  const page = window as unknown as { crmHeld?: boolean; crmRelease?: () => void };
  return new Promise((resolve) => {
    page.crmRelease = () => {
      page.crmHeld = false;
      resolve();
    };
    page.crmHeld = true;
  });
}

async function send(method: string, url: string, body?: object): Promise<Comment | null> {
  showError();
  const response = await fetch(url, {
    method,
    headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!response.ok) {
    const problem = (await response.json().catch(() => ({ message: response.statusText }))) as { message?: string };
    showError(problem.message || "Request failed (" + response.status + ")");
    return null;
  }
  // No need to touch the list here: the event comes back over the stream, to every tab.
  return (await response.json()) as Comment;
}

function edit(c: Comment): void {
  const text = prompt("Edit comment", c.text);
  if (text !== null && text !== c.text) void send("PUT", "/comments/" + c.id, { text });
}

function remove(id: number): void {
  void send("DELETE", "/comments/" + id);
}

const author = $<HTMLInputElement>("author");
const text = $<HTMLInputElement>("text");
$("new-comment").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (await send("POST", "/comments", { author: author.value, text: text.value })) {
    text.value = "";
    text.focus();
  }
});
author.value = localStorage.getItem("author") || "";
author.addEventListener("change", () => localStorage.setItem("author", author.value));
render();
void start();
