// switchboard.js sessions in Chromium, against `switchboard serve` and against Python's `websockets`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { withBrowserAndServer, open, serve, pythonServer } from "./support.mjs";

const world = withBrowserAndServer();
let python;

before(async () => {
  python = await pythonServer();
});

after(async () => {
  await python?.stop();
});

/** The servers every session test runs against: where their echo is, and how to restart them. */
const PEERS = {
  "switchboard serve": {
    echo: () => `${world.server.ws}/echo`,
    async stop() {
      const { port, data } = world.server;
      await world.server.stop();
      return async () => (world.server = await serve({ data, port }));
    },
  },
  "Python websockets": {
    echo: () => `${python.ws}/echo`,
    async stop() {
      const { port } = python;
      await python.stop();
      return async () => (python = await pythonServer(port));
    },
  },
};

/** In the page: echo a text, bytes, an ArrayBuffer and a Blob through `url`, and report what came back. */
async function echo(page, url) {
  return page.evaluate(async (url) => {
    const { websocket } = await import("/switchboard.js");
    const session = websocket(url).connect();
    const received = [];
    const done = new Promise((resolve) =>
      session.messages.subscribe((event) => {
        received.push(typeof event.data === "string" ? `text:${event.data}` : `binary:${[...new Uint8Array(event.data)].join(",")}`);
        if (received.length === 4) resolve();
      }),
    );
    const sends = [session.send("héllo"), session.send(new Uint8Array([1, 2, 255])), session.send(new Uint8Array([7]).buffer), session.send(new Blob(["blob"]))];
    const states = [];
    session.state.subscribe((s) => states.push(s.state));
    await Promise.all(sends);
    await done;
    const blob = new Promise((resolve) => session.messages.blob.subscribe(resolve));
    await session.send("as a blob");
    const text = await (await blob).text();
    const close = await session.close(1000, "done");
    return { received, text, close, states, protocol: session.protocol };
  }, url);
}

for (const [name, peer] of Object.entries(PEERS)) {
  test(`text and binary echo in Chromium against ${name}`, async () => {
    const page = await open(world.chromium, world.server);
    const result = await echo(page, peer.echo());
    // Every subscriber sees every message: the first one saw the blob's echo too.
    assert.deepEqual(result.received, ["text:héllo", "binary:1,2,255", "binary:7", "binary:98,108,111,98", "text:as a blob"]);
    assert.equal(result.text, "as a blob");
    assert.deepEqual(result.close, { code: 1000, reason: "done", wasClean: true });
    assert.deepEqual(page.problems, []);
    await page.close();
  });
}

for (const [name, peer] of Object.entries(PEERS)) {
  test(`after a close by the client, send rejects with SendError; close codes are validated as browsers do (${name})`, async () => {
    const page = await open(world.chromium, world.server);
    const result = await page.evaluate(async (url) => {
      const { websocket, SendError, CloseError } = await import("/switchboard.js");
      const session = websocket(url).connect();
      await new Promise((resolve) => session.isOpen.subscribe((open) => open && resolve()));
      const invalid = [1005, 2999, 5000].map((code) => {
        try {
          session.close(code);
          return "accepted";
        } catch (error) {
          return error instanceof CloseError ? "CloseError" : String(error);
        }
      });
      const close = await session.close(4000, "bye now");
      const error = await session.send("late").catch((e) => e);
      return { invalid, close, isSendError: error instanceof SendError, code: error.code, reason: error.reason, closed: session.isClosed.value };
    }, peer.echo());
    assert.deepEqual(result.invalid, ["CloseError", "CloseError", "CloseError"]);
    assert.deepEqual(result.close, { code: 4000, reason: "bye now", wasClean: true });
    assert.deepEqual([result.isSendError, result.code, result.reason, result.closed], [true, 4000, "bye now", true]);
    await page.close();
  });
}

/** In the page: connect to `url`, send `first` if given, and wait for the close; then try to send. */
function closedByServer(page, url, first) {
  return page.evaluate(
    async ([url, first]) => {
      const { websocket, SendError } = await import("/switchboard.js");
      const session = websocket(url).connect();
      window.session = session;
      if (first) await session.send(first);
      const close = await session.closed();
      const error = await session.send("after").catch((e) => e);
      return { close, isSendError: error instanceof SendError, kind: error.kind, code: error.code, reason: error.reason };
    },
    [url, first],
  );
}

test("after a close by switchboard serve, send rejects with SendError carrying the code and reason", async () => {
  const page = await open(world.chromium, world.server);
  const closing = closedByServer(page, `${world.server.ws}/echo?who=browser`);
  let peer;
  while (!peer) {
    const peers = await (await fetch(`${world.server.http}/api/peers?endpoint=/echo`)).json();
    peer = peers.find((p) => p.state === "open");
  }
  const answer = await fetch(`${world.server.http}/api/close`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ peer: peer.id, code: 4001, reason: "go away" }) });
  assert.equal(answer.status, 200);
  const result = await closing;
  assert.deepEqual(result.close, { code: 4001, reason: "go away", wasClean: true });
  assert.deepEqual([result.isSendError, result.kind, result.code, result.reason], [true, "closed", 4001, "go away"]);
  await page.close();
});

test("after a close by Python websockets, send rejects with SendError carrying the code and reason", async () => {
  const page = await open(world.chromium, world.server);
  const result = await closedByServer(page, `${python.ws}/close`, "hello");
  assert.deepEqual(result.close, { code: 4321, reason: "custom reason", wasClean: true });
  assert.deepEqual([result.isSendError, result.code, result.reason], [true, 4321, "custom reason"]);
  await page.close();
});

for (const [name, peer] of Object.entries(PEERS)) {
  test(`a session with a reconnect policy survives a restart of ${name} and delivers queued sends in order`, async () => {
    const page = await open(world.chromium, world.server);
    await page.evaluate(async (url) => {
      const { websocket } = await import("/switchboard.js");
      const session = websocket(url).reconnect({ minDelay: 100, maxDelay: 300 }).connect();
      window.session = session;
      window.replies = [];
      session.messages.body.subscribe((text) => window.replies.push(text));
      window.states = [];
      session.state.subscribe((s) => window.states.push(s.state));
      await new Promise((resolve) => session.isOpen.subscribe((open) => open && resolve()));
    }, peer.echo());
    const restart = await peer.stop();
    await page.waitForFunction(() => window.session.state.value.state !== "open");
    const queued = await page.evaluate(() => {
      window.sent = ["m1", "m2", "m3", "m4", "m5"].map((m) => window.session.send(m));
      return window.session.queued.value.messages;
    });
    assert.equal(queued, 5, "sends made while the server is down wait in the queue");
    await restart();
    await page.waitForFunction(() => window.replies.length === 5, null, { timeout: 15000 });
    const result = await page.evaluate(async () => {
      await Promise.all(window.sent);
      return { replies: window.replies, states: window.states, lastClose: window.session.closes.value };
    });
    assert.deepEqual(result.replies, ["m1", "m2", "m3", "m4", "m5"]);
    assert.ok(result.states.includes("reconnecting"), `${result.states}`);
    assert.equal(result.states.at(-1), "open");
    assert.notEqual(result.lastClose.code, 1000);
    assert.deepEqual(page.problems.filter((p) => !p.includes("WebSocket connection")), []);
    await page.close();
  });
}
