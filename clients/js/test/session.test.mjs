// The session API against a server nobody here wrote: Node's `ws`, in-process.
import { test } from "node:test";
import assert from "node:assert/strict";
import { WebSocket, WebSocketServer } from "ws";
import { websocket, SendError, CloseError, ConnectionError, reconnectDelay, State } from "../switchboard.js";

/** A `ws` server on a free port (or `port`): echo, except the commands below. */
function server(port = 0) {
  return new Promise((resolve) => {
    const wss = new WebSocketServer({ host: "127.0.0.1", port });
    wss.on("connection", (ws, request) => {
      if (request.url === "/greet") for (const n of [1, 2, 3]) ws.send(`hello ${n}`);
      ws.on("message", (data, isBinary) => {
        const text = data.toString();
        if (!isBinary && text.startsWith("close ")) {
          const [, code, ...reason] = text.split(" ");
          return ws.close(Number(code), reason.join(" "));
        }
        if (!isBinary && text.toLowerCase() === "bye") return ws.close(1000, "Client said BYE");
        ws.send(data, { binary: isBinary });
      });
    });
    wss.on("listening", () => resolve({ wss, url: `ws://127.0.0.1:${wss.address().port}`, port: wss.address().port }));
  });
}

function stop(wss) {
  for (const client of wss.clients) client.terminate();
  return new Promise((resolve) => wss.close(resolve));
}

/** The next `count` values of an async iterable. */
async function take(iterable, count) {
  const out = [];
  for await (const value of iterable) {
    out.push(value);
    if (out.length === count) break;
  }
  return out;
}

function until(readable, predicate) {
  return new Promise((resolve) => {
    const off = readable.subscribe((value) => {
      if (predicate(value)) {
        queueMicrotask(() => off());
        resolve(value);
      }
    });
  });
}

test("text and binary messages echo, in their views", async () => {
  const { wss, url } = await server();
  const session = websocket(url).webSocket(WebSocket).connect("echo");
  const texts = take(session.messages.body, 2);
  await session.send("hello");
  await session.send(new Uint8Array([1, 2, 255]));
  assert.deepEqual(await texts, ["hello", "\u0001\u0002\ufffd"]);
  const buffers = take(session.messages.arrayBuffer, 1);
  await session.send(new Uint8Array([7, 8]).buffer);
  assert.deepEqual([...new Uint8Array((await buffers)[0])], [7, 8]);
  const blobs = take(session.messages.blob, 1);
  await session.send(new Blob(["blob!"]));
  assert.equal(await (await blobs)[0].text(), "blob!");
  await session.close();
  await stop(wss);
});

test("a subscriber attached after connect() misses nothing", async () => {
  const { wss, url } = await server();
  const session = websocket(url).webSocket(WebSocket).connect("greet");
  await until(session.isOpen, Boolean);
  await new Promise((r) => setTimeout(r, 50)); // the greetings arrive while nobody listens
  assert.deepEqual(await take(session.messages.body, 3), ["hello 1", "hello 2", "hello 3"]);
  await session.close();
  await stop(wss);
});

test("state values follow the Svelte store contract and sends while connecting go out in order", async () => {
  const { wss, url } = await server();
  const session = websocket(url).webSocket(WebSocket).connect();
  const seen = [];
  const off = session.state.subscribe((s) => seen.push(s.state));
  assert.deepEqual(seen, [State.CONNECTING], "the current value comes first, synchronously");
  assert.equal(session.isConnecting.value, true);
  const replies = take(session.messages.body, 3);
  const sends = ["a", "b", "c"].map((m) => session.send(m));
  assert.equal(session.queued.value.messages, 3);
  await Promise.all(sends);
  assert.deepEqual(await replies, ["a", "b", "c"]);
  assert.equal(session.isOpen.value, true);
  await session.close(1000, "done");
  off();
  assert.deepEqual(seen, ["connecting", "open", "closing", "closed"]);
  assert.deepEqual(session.closes.value, { code: 1000, reason: "done", wasClean: true });
  await stop(wss);
});

test("after a close by the server, send rejects with SendError carrying code and reason", async () => {
  const { wss, url } = await server();
  const session = websocket(url).webSocket(WebSocket).connect();
  await session.send("bye");
  const close = await session.closed();
  assert.deepEqual(close, { code: 1000, reason: "Client said BYE", wasClean: true });
  assert.equal(session.isClosed.value, true);
  await assert.rejects(session.send("more"), (error) => {
    assert.ok(error instanceof SendError);
    assert.equal(error.kind, "closed");
    assert.equal(error.code, 1000);
    assert.equal(error.reason, "Client said BYE");
    return true;
  });
  await stop(wss);
});

test("after a close by the client, send rejects; close codes are validated as browsers do", async () => {
  const { wss, url } = await server();
  const session = websocket(url).webSocket(WebSocket).connect();
  await until(session.isOpen, Boolean);
  assert.throws(() => session.close(1005), CloseError);
  assert.throws(() => session.close(2999), CloseError);
  assert.throws(() => session.close(1000, "x".repeat(124)), CloseError);
  const closing = session.close(4000, "my reason");
  await assert.rejects(session.send("late"), (e) => e instanceof SendError && e.kind === "closing");
  assert.deepEqual(await closing, { code: 4000, reason: "my reason", wasClean: true });
  await assert.rejects(session.send("later"), (e) => e instanceof SendError && e.code === 4000);
  await stop(wss);
});

test("a bad URL is a ConnectionError at connect(); a refused connection closes with 1006", async () => {
  assert.throws(() => websocket("http://[::1").webSocket(WebSocket).connect(), ConnectionError);
  const { wss, port } = await server();
  await stop(wss);
  const session = websocket(`ws://127.0.0.1:${port}`).webSocket(WebSocket).connect();
  const close = await session.closed();
  assert.equal(close.code, 1006);
  assert.equal(close.wasClean, false);
});

test("with a reconnect policy the session survives a server restart and delivers queued sends in order", async () => {
  let { wss, url, port } = await server();
  const session = websocket(url).webSocket(WebSocket).reconnect({ minDelay: 20, maxDelay: 100 }).connect();
  await until(session.isOpen, Boolean);
  await stop(wss);
  await until(session.state, (s) => s.state === State.RECONNECTING);
  assert.equal(session.isConnecting.value, true);
  const sends = [1, 2, 3, 4, 5].map((n) => session.send(`m${n}`));
  assert.equal(session.queued.value.messages, 5);
  ({ wss } = await server(port));
  const replies = await take(session.messages.body, 5);
  await Promise.all(sends);
  assert.deepEqual(replies, ["m1", "m2", "m3", "m4", "m5"]);
  assert.equal(session.closes.value.code, 1006);
  await session.close();
  await stop(wss);
});

test("close codes decide: 4000-4099 stop, 4200-4299 reconnect at once", async () => {
  const { wss, url } = await server();
  const socket = websocket(url).webSocket(WebSocket).reconnect({ minDelay: 5000, maxDelay: 5000 });
  const again = socket.connect();
  await until(again.isOpen, Boolean);
  await again.send("close 4200 come back");
  const reconnecting = await until(again.state, (s) => s.state === State.RECONNECTING);
  assert.equal(reconnecting.delay, 0);
  await until(again.isOpen, Boolean);
  await again.close();
  const stopping = socket.connect();
  await until(stopping.isOpen, Boolean);
  await stopping.send("close 4001 go away");
  assert.deepEqual(await stopping.closed(), { code: 4001, reason: "go away", wasClean: true });
  await stop(wss);
});

test("the outbound queue is bounded in bytes", async () => {
  const { wss, port } = await server();
  await stop(wss);
  const session = websocket(`ws://127.0.0.1:${port}`).webSocket(WebSocket).reconnect({ minDelay: 10000 }).maxQueuedBytes(10).connect();
  const first = session.send("12345678");
  await assert.rejects(session.send("é12"), (e) => e instanceof SendError && e.kind === "queue-full");
  session.close();
  await assert.rejects(first, (e) => e instanceof SendError && e.kind === "closed");
});

test("the reconnect delay: exponential, capped, full jitter", () => {
  const policy = { minDelay: 500, maxDelay: 20000, stableAfter: 5000, maxAttempts: 3 };
  assert.equal(reconnectDelay(policy, 1006, 0, 0.999), 499.5);
  assert.equal(reconnectDelay(policy, 1011, 2, 0.5), 1000);
  assert.equal(reconnectDelay(policy, 1006, 3, 0.5), null, "attempts exhausted");
  assert.equal(reconnectDelay({ ...policy, maxAttempts: Infinity }, 1001, 30, 1), 20000);
  for (const code of [1000, 1002, 1003, 1007, 1008, 1009, 1010, 4000, 4099]) assert.equal(reconnectDelay(policy, code, 0), null);
  assert.equal(reconnectDelay(policy, 4250, 1), 0);
});

test("socket builders: append trims slashes, every connect is independent", async () => {
  const socket = websocket("ws://h/base/", "a", "b");
  assert.equal(socket.append("/x/").url, "ws://h/base/x/");
  assert.deepEqual(socket.protocols("c").protocolList, ["c"]);
  assert.deepEqual(socket.protocolList, ["a", "b"], "builders return new sockets");
  const { wss, url } = await server();
  const one = websocket(url).webSocket(WebSocket).connect();
  const two = websocket(url).webSocket(WebSocket).connect();
  await Promise.all([until(one.isOpen, Boolean), until(two.isOpen, Boolean)]);
  assert.equal(wss.clients.size, 2);
  await one.close();
  await two.close();
  await stop(wss);
});
