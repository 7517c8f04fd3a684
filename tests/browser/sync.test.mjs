// syncWith in Chromium pages against `switchboard serve`: convergence, offline edits, rejections,
// and pending edits that survive a reload (sessionStorage).
import { test } from "node:test";
import assert from "node:assert/strict";
import { withBrowserAndServer, open, serve } from "./support.mjs";

const world = withBrowserAndServer();

/** A page whose `window.store` is a list synced with `collection` (`window.sync` its handle). */
async function syncedPage(context, collection) {
  const page = await open(context, world.server, "/demo/chat");
  await startSync(page, collection);
  return page;
}

function startSync(page, collection) {
  return page.evaluate(async (url) => {
    const { websocket, createStore, Resource, syncListWith } = await import("/switchboard.js");
    window.store = createStore([]);
    window.sync = syncListWith(window.store, websocket(url).reconnect({ minDelay: 100, maxDelay: 300 }), new Resource((item) => item.id));
    window.rejections = [];
    window.sync.rejections.subscribe((r) => window.rejections.push(r));
    await window.sync.synced();
  }, `${world.server.ws}/sync/${collection}`);
}

const value = (page) => page.evaluate(() => window.store.value);
const status = (page) => page.evaluate(() => window.sync.status.value);
const until = (page, predicate, argument) => page.waitForFunction(predicate, argument, { timeout: 15000 });

async function restart() {
  const { port, data } = world.server;
  await world.server.stop();
  return async () => {
    world.server = await serve({ data, port });
  };
}

test("two pages converge both ways", async () => {
  const context = await world.chromium.newContext();
  const [a, b] = [await syncedPage(context, "converge"), await syncedPage(context, "converge")];
  await a.evaluate(() => window.store.set([{ id: "t1", title: "from a" }]));
  await until(b, () => window.store.value.length === 1);
  await b.evaluate(() => window.store.update((list) => [...list.map((t) => ({ ...t, done: true })), { id: "t2", title: "from b" }]));
  await until(a, () => window.store.value.length === 2 && window.store.value[0].done === true);
  assert.deepEqual(await value(a), await value(b));
  await until(a, () => window.sync.status.value.state === "synced" && window.sync.status.value.version === 3);
  assert.equal((await status(b)).version, 3);
  assert.deepEqual([...a.problems, ...b.problems], []);
  await context.close();
});

test("an edit made while the server is down is replayed when it comes back", async () => {
  const context = await world.chromium.newContext();
  const [a, b] = [await syncedPage(context, "offline"), await syncedPage(context, "offline")];
  const back = await restart();
  await until(a, () => window.sync.status.value.state === "offline");
  await a.evaluate(() => window.store.set([{ id: "o1", title: "written offline" }]));
  assert.deepEqual(await status(a), { state: "offline", version: 0, pending: 1 });
  assert.equal((await a.evaluate(() => window.sync.pending.value))[0].state, "queued");
  await back();
  await until(b, () => window.store.value.length === 1);
  assert.deepEqual(await value(b), [{ id: "o1", title: "written offline" }]);
  await until(a, () => window.sync.status.value.state === "synced" && window.sync.status.value.pending === 0);
  await context.close();
});

test("a rejected edit rolls back to the server's value, and the other page never sees it", async () => {
  const context = await world.chromium.newContext();
  const [a, b] = [await syncedPage(context, "rejects"), await syncedPage(context, "rejects")];
  await a.evaluate(() => window.store.set([{ id: "r1", text: "kept" }]));
  await until(b, () => window.store.value.length === 1);
  await a.evaluate(() => window.store.set([{ id: "r1", text: "x".repeat(2 << 20) }]));
  await until(a, () => window.rejections.length === 1);
  const rejection = await a.evaluate(() => window.rejections[0]);
  assert.match(rejection.reason, /at most 1048576/);
  await until(a, () => window.store.value[0].text === "kept");
  assert.deepEqual(await value(b), [{ id: "r1", text: "kept" }]);
  await context.close();
});

test("pending edits survive a reload and go out once the page is back online", async () => {
  const context = await world.chromium.newContext();
  const b = await syncedPage(context, "reload");
  // Page a is offline as far as its sync socket goes (the page itself still loads).
  let online = false;
  const a = await context.newPage();
  await a.routeWebSocket(/\/sync\/reload/, (ws) => (online ? ws.connectToServer() : ws.close({ code: 4100, reason: "offline" })));
  await a.goto(`${world.server.http}/demo/chat`);
  const setUp = (url) =>
    a.evaluate(async (url) => {
      const { websocket, createStore, Resource, syncListWith } = await import("/switchboard.js");
      window.store = createStore([]);
      window.sync = syncListWith(window.store, websocket(url).reconnect({ minDelay: 100, maxDelay: 300 }), new Resource((item) => item.id));
      return { value: window.store.value, pending: window.sync.pending.value.length, client: window.sync.client };
    }, url);
  const url = `${world.server.ws}/sync/reload`;
  const before = await setUp(url);
  await a.evaluate(() => window.store.set([{ id: "n1", title: "survives a reload" }]));
  assert.equal(await a.evaluate(() => window.sync.pending.value.length), 1);
  await a.reload();
  const after = await setUp(url);
  assert.deepEqual(after, { value: [{ id: "n1", title: "survives a reload" }], pending: 1, client: before.client });
  online = true;
  await until(b, () => window.store.value.length === 1);
  await until(a, () => window.sync.status.value.state === "synced");
  assert.deepEqual(await value(b), [{ id: "n1", title: "survives a reload" }]);
  await context.close();
});
