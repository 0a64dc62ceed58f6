// The domain_events page: one user's notifications, typed from /events/asyncapi.json.
//
// No `lastEventId` is given, so the client resumes after the last id this tab stored: a reload
// shows what was pushed while the page was away (with replay on), and nothing twice.
import { subscribe, type EventMeta } from "@livepush/client";
import type { Events } from "./events.gen";

const user = Number(new URLSearchParams(location.search).get("user") ?? "7");
const status = document.getElementById("status") as HTMLElement;
const log = document.getElementById("log") as HTMLUListElement;
(document.getElementById("user") as HTMLElement).textContent = String(user);

function show(text: string, meta: EventMeta): void {
  const li = document.createElement("li");
  li.dataset.id = meta.id ?? "";
  const name = document.createElement("span");
  name.className = "event";
  name.textContent = meta.event;
  li.append(name, text);
  log.prepend(li);
}

const sub = subscribe<Events>(`/users/${user}/events`, {
  onStatus: (s) => {
    status.dataset.state = s === "open" ? "connected" : s;
    status.textContent = s === "open" ? "connected" : s + "…";
  },
  onReset: (reset, meta) => show(`some notifications may be missing (${reset.reason})`, meta),
});
sub.on("sync.completed", (e, meta) => show(`${e.accounts} accounts synced at ${e.finished_at}`, meta));
sub.on("invoice.paid", (e, meta) => show(`invoice ${e.invoice_id}: ${(e.amount_cents / 100).toFixed(2)} paid`, meta));
sub.on("maintenance.scheduled", (e, meta) => show(`maintenance in ${e.minutes} minutes`, meta));
