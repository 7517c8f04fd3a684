// The dashboard: one WebSocket (/api/live, through switchboard.js) pushes the overview every second.
import { websocket } from "/switchboard.js";

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (text is set as text, never parsed as HTML). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value !== null && value !== undefined) element.setAttribute(name, value);
  }
  for (const child of children.flat()) element.append(child instanceof Node ? child : String(child ?? ""));
  return element;
}

/** Replaces a table's rows; `columns` are [title, numeric?]; rows are {cells, attributes}. */
function fill(table, columns, rows, empty) {
  const head = h("tr", {}, columns.map(([title, numeric]) => h("th", { class: numeric ? "num" : null }, title)));
  const body = rows.length
    ? rows.map((row) => h("tr", row.attributes ?? {}, row.cells.map((cell, i) => h("td", { class: columns[i][1] ? "num" : null }, cell))))
    : [h("tr", {}, h("td", { class: "empty", colspan: columns.length }, empty))];
  table.replaceChildren(h("thead", {}, head), h("tbody", {}, body));
}

const number = (n) => Number(n ?? 0).toLocaleString("en");
function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}
function since(ms, now) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
const state = (text) => h("span", { class: `state ${text}` }, text);
const time = (ms) => new Date(ms).toLocaleTimeString();

async function post(path, body) {
  const response = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error ?? `${response.status} ${response.statusText}`);
  return answer;
}

function render(o) {
  const now = o.server.now;
  $("version").textContent = `v${o.server.version}`;
  $("uptime").textContent = since(o.server.started_at, now);
  $("peer-count").textContent = number(o.peer_count);
  $("peers-shown").textContent = o.peer_count > o.peers.length ? `(the ${o.peers.length} newest of ${number(o.peer_count)}; /api/peers lists all)` : "";
  $("rate-in").textContent = number(o.rates.in.at(-1) ?? 0);
  $("rate-out").textContent = number(o.rates.out.at(-1) ?? 0);
  spark(o.rates);

  fill($("endpoints"), [["Route"], ["Kind"], ["Open", 1], ["Connections", 1], ["Msgs in", 1], ["Msgs out", 1], ["Bytes in", 1], ["Bytes out", 1], ["Rate-limited", 1], ["Close codes"]],
    o.endpoints.routes.map((e) => ({
      attributes: { "data-route": e.path },
      cells: [h("code", {}, e.path || "(axum route)"), e.kind, number(e.open), number(e.connections), number(e.traffic.messages_in),
        number(e.traffic.messages_out), bytes(e.traffic.bytes_in), bytes(e.traffic.bytes_out), number(e.rate_limited),
        Object.entries(e.close_codes).map(([code, n]) => `${code}×${n}`).join(" ")],
    })), "no routes");

  fill($("scripts"), [["Endpoint"], ["Descriptor"], ["Handler"], ["Status"], ["Peers", 1], ["Errors", 1], ["Problem"]],
    o.endpoints.scripts.map((s) => ({
      attributes: { "data-endpoint": s.endpoint ?? s.location },
      cells: [s.endpoint ? h("a", { href: `/websockets/v4/service/${s.endpoint}`, class: "mono" }, s.endpoint) : "—", h("code", {}, s.location),
        h("code", {}, s.handler ?? ""), state(s.status), number(s.peers), number(s.errors),
        h("span", { class: "error-text" }, s.error ?? s.last_error ?? "")],
    })), "no *.websocket descriptors in the project");

  fill($("peers"), [["Peer"], ["Route"], ["Address"], ["Protocol"], ["Connected"], ["In", 1], ["Out", 1], ["Buffered", 1], ["Topics"], [""]],
    o.peers.map((p) => ({
      attributes: { "data-peer": p.id },
      cells: [h("code", { title: p.id }, p.id.slice(0, 8)), h("code", {}, p.path), p.address ?? "", p.protocol ?? "",
        since(p.connected_at, now), number(p.traffic.messages_in), number(p.traffic.messages_out), bytes(p.buffered),
        p.topics.join(", "),
        h("button", { class: "danger", onclick: () => post("/api/close", { peer: p.id }).catch((e) => alert(e.message)) }, "Close")],
    })), "nobody is connected");

  fill($("topics"), [["Topic"], ["Subscribers", 1]],
    o.topics.map((t) => ({ attributes: { "data-topic": t.name }, cells: [h("code", {}, t.name), number(t.subscribers)] })), "no topics");

  fill($("clients"), [["Client"], ["URI"], ["Handler"], ["State"], ["Created by"]],
    o.clients.map((c) => ({ cells: [h("code", {}, c.id.slice(0, 8)), h("code", {}, c.uri), h("code", {}, c.handler), state(c.state), c.owner] })),
    "no outbound clients");

  fill($("sync"), [["Collection"], ["Version", 1], ["Stores", 1], ["fritz2 raw", 1]],
    o.sync.map((c) => ({ attributes: { "data-collection": c.name }, cells: [h("code", {}, c.name), number(c.version), number(c.stores), number(c.raw_stores)] })),
    "no store is syncing");

  fill($("errors"), [["Time"], ["Level"], ["Where"], ["What"]],
    o.errors.slice().reverse().map((e) => ({ cells: [time(e.at), state(e.level === "ERROR" ? "error" : "connecting"), h("code", {}, e.target), e.message] })),
    "nothing went wrong");
}

function spark({ in: rin, out: rout }) {
  const max = Math.max(1, ...rin, ...rout);
  const points = (series) => series.map((v, i) => `${(i / Math.max(1, series.length - 1)) * 600},${58 - (v / max) * 56}`).join(" ");
  const [lineIn, lineOut] = $("spark").querySelectorAll("polyline");
  lineIn.setAttribute("points", points(rin));
  lineOut.setAttribute("points", points(rout));
}

$("publish").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    const answer = await post("/api/publish", { topic: form.get("topic"), message: form.get("message") });
    $("publish-result").textContent = `sent to ${answer.subscribers} subscriber(s) here`;
  } catch (error) {
    $("publish-result").textContent = error.message;
  }
});

const live = new URL("/api/live", location.href);
live.protocol = live.protocol === "https:" ? "wss:" : "ws:";
const session = websocket(live.href).reconnect({ minDelay: 500, maxDelay: 5000 }).connect();
session.state.subscribe((s) => {
  $("live").className = `state ${s.state}`;
  $("live").textContent = s.state;
});
session.messages.json.subscribe(render);
