// The chat demo: /chat?room=NAME through switchboard.js. Each message carries an id, so the replay
// that a reconnect with `since` brings (everything after our last welcome) shows what was missed
// once, and nothing twice.
import { websocket, reconnectDelay } from "/switchboard.js";

const $ = (id) => document.getElementById(id);
const base = new URL("/chat", location.href);
base.protocol = base.protocol === "https:" ? "wss:" : "ws:";
const policy = { minDelay: 300, maxDelay: 5000, stableAfter: 5000, maxAttempts: Infinity };

let room = null; // {name, me, session, position, seen: Set, attempt, timer}

$("name").value = sessionStorage.getItem("chat.name") ?? `guest-${Math.floor(Math.random() * 1000)}`;

function line(text, kind = "system", who = null) {
  const item = document.createElement("li");
  item.className = kind;
  if (who) {
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who;
    item.append(name);
  }
  item.append(text);
  $("log").append(item);
  $("log").scrollTop = $("log").scrollHeight;
}

function show(state, text = state) {
  $("connection").className = `state ${state}`;
  $("connection").textContent = text;
  const open = state === "open";
  $("text").disabled = !room;
  $("send").disabled = !room;
  $("leave").disabled = !room;
  $("join-button").disabled = Boolean(room) && !open && state !== "closed";
}

function connect() {
  const url = new URL(base);
  url.searchParams.set("room", room.name);
  if (room.position) url.searchParams.set("since", room.position);
  const session = websocket(url.href).connect();
  room.session = session;
  // What was said while offline goes out first, in order, once this connection opens.
  for (const message of room.outbox.splice(0)) session.sendJson(message).catch((error) => line(`not sent: ${error.message}`));
  session.state.subscribe((s) => {
    if (room?.session !== session) return;
    if (s.state === "connecting") show("connecting", room.attempt ? `reconnecting (attempt ${room.attempt})` : "connecting");
    if (s.state === "open") show("open", "online");
  });
  session.queued.subscribe((q) => ($("queued").textContent = q.messages ? `${q.messages} waiting to be sent` : ""));
  session.messages.json.subscribe((message) => room?.session === session && receive(message));
  session.closed().then((close) => {
    if (room?.session !== session) return;
    const delay = reconnectDelay(policy, close.code, room.attempt);
    if (delay === null) {
      show("closed", `closed (${close.code}${close.reason ? `: ${close.reason}` : ""})`);
      return;
    }
    room.attempt += 1;
    show("reconnecting", `offline, retrying in ${(delay / 1000).toFixed(1)} s`);
    room.timer = setTimeout(connect, delay);
  });
}

function receive(message) {
  switch (message.type) {
    case "welcome":
      room.me = message.id;
      room.attempt = 0;
      if (message.recovered === false) line("some messages could not be recovered");
      else if (message.recovered) line("back online: missed messages recovered");
      else line(`you joined ${message.room}`);
      room.position = message.position ?? room.position;
      $("members").textContent = `${message.peers} here`;
      break;
    case "join":
    case "leave":
      if (message.id !== room.me) line(`someone ${message.type === "join" ? "joined" : "left"}`);
      $("members").textContent = `${message.peers} here`;
      break;
    case "say":
      if (room.seen.has(message.id)) return;
      room.seen.add(message.id);
      line(message.text, "message", `${message.name}:`);
      break;
  }
}

$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  leave();
  sessionStorage.setItem("chat.name", $("name").value);
  room = { name: $("room").value.trim() || "lobby", me: null, session: null, position: null, seen: new Set(), attempt: 0, timer: null, outbox: [] };
  $("log").replaceChildren();
  connect();
});

function leave() {
  if (!room) return;
  const { session, timer, name } = room;
  room = null;
  clearTimeout(timer);
  session?.close(1000, "left the room");
  line(`you left ${name}`);
  $("members").textContent = "";
  show("closed", "not joined");
}
$("leave").addEventListener("click", leave);

$("say").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!room || !text) return;
  const message = { type: "say", id: crypto.getRandomValues(new Uint32Array(2)).join("-"), name: $("name").value, text };
  room.seen.add(message.id); // everyone else gets it from the room; we show ours now
  line(text, "message", `${message.name}:`);
  if (room.session.isClosed.value) {
    room.outbox.push(message);
    $("queued").textContent = `${room.outbox.length} waiting to be sent`;
  } else {
    room.session.sendJson(message).catch((error) => line(`not sent: ${error.message}`));
  }
  $("text").value = "";
});
