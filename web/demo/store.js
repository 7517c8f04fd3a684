// The store demo: a form kept in sync across tabs with syncWith (switchboard.sync.v1).
import { websocket, createStore, Resource, syncWith } from "/switchboard.js";

const $ = (id) => document.getElementById(id);
const fields = ["title", "place", "date", "guests", "notes"];
const id = new URLSearchParams(location.search).get("form") ?? "shared";
$("entity").textContent = id;

const empty = { id, title: "", place: "", date: "", guests: "", notes: "" };
const forms = new Resource((form) => form.id, undefined, empty);
const store = createStore(empty);
const url = new URL("/sync/demo-forms", location.href);
url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
const socket = websocket(url.href).reconnect({ minDelay: 300, maxDelay: 3000 });

let sync = null;
let unsubscribe = [];

function start() {
  // Edits made while offline are in the store only: after the sync is back (it shows what it had
  // saved), they are written again, as local changes it sends.
  const edited = store.value;
  sync = syncWith(store, socket, forms);
  store.set(edited);
  unsubscribe = [
    sync.status.subscribe((s) => {
      $("status").className = `state ${s.state}`;
      $("status").textContent = s.state;
      $("pending").textContent = `${s.pending} pending`;
      $("version").textContent = s.version === null ? "" : `version ${s.version}`;
    }),
    sync.rejections.subscribe((r) => ($("problem").textContent = `the server refused an edit: ${r.reason}`)),
    sync.errors.subscribe((e) => ($("problem").textContent = e)),
  ];
  $("toggle").textContent = "Go offline";
}

async function stop() {
  const running = sync;
  sync = null;
  for (const off of unsubscribe.splice(0)) off();
  await running.stop();
  $("status").className = "state offline";
  $("status").textContent = "offline";
  $("pending").textContent = `${running.pending.value.length} pending`;
  $("toggle").textContent = "Go online";
}

// The form shows the store; typing writes to it (a field being typed in keeps its cursor).
store.subscribe((form) => {
  for (const field of fields) {
    const input = $(field);
    const value = String(form[field] ?? "");
    if (input.value !== value) input.value = value;
  }
});
$("form").addEventListener("input", (event) => {
  const field = event.target.name;
  if (!fields.includes(field)) return;
  store.update((form) => ({ ...form, [field]: event.target.value }));
  if (!sync) $("pending").textContent = "offline: the edit waits";
});
$("toggle").addEventListener("click", () => (sync ? stop() : start()));

start();
