// syncWith against the real `switchboard serve` (its /sync hub on SQLite), and the replica state machine.
import { test } from "node:test";
import assert from "node:assert/strict";
import { WebSocket } from "ws";
import { websocket, createStore, Resource, syncWith, syncListWith, Replica, SyncState } from "../switchboard.js";
import { serve, dataDir } from "./serve.mjs";

const people = new Resource((p) => p.id, undefined, { id: "", name: "" });

/** A Storage kept in memory: what a tab's sessionStorage is across a reload. */
function memoryStorage() {
  const items = new Map();
  return { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => items.set(k, String(v)), items };
}

function until(readable, predicate, what = "the expected value") {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; last: ${JSON.stringify(readable.value)}`)), 10000);
    const off = readable.subscribe((value) => {
      if (predicate(value)) {
        clearTimeout(timer);
        queueMicrotask(() => off());
        resolve(value);
      }
    });
  });
}

function socketFor(server, collection) {
  return websocket(`${server.ws}/sync/${collection}`).webSocket(WebSocket).reconnect({ minDelay: 50, maxDelay: 200 });
}

test("two list stores converge both ways", async () => {
  const server = await serve();
  try {
    const a = createStore([]);
    const b = createStore([]);
    const syncA = syncListWith(a, socketFor(server, "people"), people, { storage: null });
    const syncB = syncListWith(b, socketFor(server, "people"), people, { storage: null });
    await Promise.all([syncA.synced(), syncB.synced()]);
    a.update((list) => [...list, { id: "p1", name: "Ada" }]);
    assert.equal(syncA.status.value.state, SyncState.SYNCING, "a local edit is pending at once");
    await until(b, (list) => list.length === 1, "b to see Ada");
    assert.deepEqual(b.value, [{ id: "p1", name: "Ada" }]);
    b.set([{ id: "p1", name: "Ada Lovelace" }, { id: "p2", name: "Grace" }]);
    await until(a, (list) => list.length === 2 && list[0].name === "Ada Lovelace", "a to see b's edits");
    b.set([{ id: "p2", name: "Grace" }]);
    await until(a, (list) => list.length === 1, "a to see the delete");
    const version = await syncA.synced();
    assert.equal(version, await syncB.synced());
    assert.equal(version, 4, "three mutations and a delete: four versions");
    await syncA.stop();
    await syncB.stop();
    assert.equal(syncA.status.value.state, SyncState.STOPPED);
  } finally {
    await server.stop();
  }
});

test("a single-entity store follows its id; the server's value replaces it and is not sent back", async () => {
  const server = await serve();
  try {
    const mine = createStore({ id: "me", name: "first" });
    const other = createStore({ id: "me", name: "" });
    const syncMine = syncWith(mine, socketFor(server, "profiles"), people, { storage: null });
    const syncOther = syncWith(other, socketFor(server, "profiles"), people, { storage: null });
    await Promise.all([syncMine.synced(), syncOther.synced()]);
    assert.equal(syncMine.pending.value.length, 0, "as fritz2: the initial value is not sent");
    mine.set({ id: "me", name: "second" });
    await until(other, (p) => p.name === "second", "the other store to get the edit");
    await syncOther.synced();
    assert.equal(syncOther.pending.value.length, 0, "what the server sent is not sent back");
    await syncMine.stop();
    await syncOther.stop();
  } finally {
    await server.stop();
  }
});

test("a rejected edit rolls back to the server's value and is reported", async () => {
  const server = await serve();
  try {
    const store = createStore({ id: "doc", text: "small" });
    const sync = syncWith(store, socketFor(server, "docs"), people, { storage: null });
    await sync.synced();
    store.set({ id: "doc", text: "kept" });
    await sync.synced();
    const rejected = new Promise((resolve) => sync.rejections.subscribe(resolve));
    store.set({ id: "doc", text: "x".repeat(2 << 20) }); // over the hub's 1 MiB entity limit
    const rejection = await rejected;
    assert.match(rejection.reason, /bytes of JSON, at most/);
    assert.equal(rejection.id, "doc");
    await until(store, (doc) => doc.text === "kept", "the rollback");
    assert.equal(sync.pending.value.length, 0);
    await sync.stop();
  } finally {
    await server.stop();
  }
});

test("an edit made offline is replayed when the server comes back; pending mutations survive a reload", async () => {
  const data = dataDir();
  let server = await serve({ data });
  const port = server.port;
  const storage = memoryStorage();
  try {
    const store = createStore([]);
    const sync = syncListWith(store, socketFor(server, "notes"), people, { storage });
    await sync.synced();
    await server.stop();
    await until(sync.status, (s) => s.state === SyncState.OFFLINE, "offline");
    store.set([{ id: "n1", name: "written offline" }]);
    assert.equal(sync.status.value.pending, 1);
    await sync.stop(); // the page goes away with the edit still pending
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(JSON.parse(storage.items.values().next().value).pending.length, 1, "saved");

    const reloaded = createStore([]);
    const again = syncListWith(reloaded, socketFor(server, "notes"), people, { storage });
    assert.deepEqual(reloaded.value, [{ id: "n1", name: "written offline" }], "the reload shows the pending edit at once");
    assert.equal(again.client, sync.client, "the same client name, so a replay is recognised");
    server = await serve({ data, port });
    const version = await again.synced();
    assert.equal(version, 1);
    const observer = createStore([]);
    const look = syncListWith(observer, socketFor(server, "notes"), people, { storage: null });
    await look.synced();
    assert.deepEqual(observer.value, [{ id: "n1", name: "written offline" }]);
    await again.stop();
    await look.stop();
  } finally {
    await server.stop();
  }
});

test("an ack that arrives after a newer change of the same entity does not undo it", () => {
  const replica = new Replica("forms", null, "me", false);
  replica.onOpen();
  replica.onMessage({ type: "snapshot", entities: [], version: 0 });
  replica.onMessage({ type: "ready", version: 0 });
  const [mutate] = replica.localEdit(new Map([["form", { title: "mine" }]]));
  replica.onMessage({ type: "change", id: "form", data: { title: "mine" }, version: 1 });
  replica.onMessage({ type: "change", id: "form", data: { title: "mine", guests: 12 }, version: 2 });
  replica.onMessage({ type: "ack", mutation_id: mutate.mutation_id, version: 1, data: { title: "mine" } });
  assert.equal(replica.pending.length, 0);
  assert.deepEqual(replica.view().get("form"), { title: "mine", guests: 12 });
});

test("an ack ahead of its own change is not synced until the change arrives", () => {
  const replica = new Replica("c", null, "me", false);
  replica.onOpen();
  replica.onMessage({ type: "snapshot", entities: [], version: 0 });
  replica.onMessage({ type: "ready", version: 0 });
  const [mutate] = replica.localEdit(new Map([["a", 1]]));
  replica.onMessage({ type: "ack", mutation_id: mutate.mutation_id, version: 1, data: 1 });
  assert.equal(replica.synced(), false, "version 1 is acknowledged, its change not yet seen");
  replica.onMessage({ type: "change", id: "a", data: 1, version: 1 });
  assert.equal(replica.synced(), true);
});

test("the replica resubscribes on a gap, ignores repeats and keeps a retryable rejection", () => {
  const replica = new Replica("c", null, "me", false);
  assert.deepEqual(replica.onOpen(), [{ type: "sub", collection: "c", client: "me" }]);
  replica.onMessage({ type: "snapshot", entities: [{ id: "a", data: 1, version: 1 }], version: 1 });
  replica.onMessage({ type: "ready", version: 1 });
  assert.equal(replica.onMessage({ type: "change", id: "a", data: 0, version: 1 }).viewChanged, false, "a repeat");
  const gap = replica.onMessage({ type: "change", id: "b", data: 2, version: 3 });
  assert.deepEqual(gap.send, [{ type: "sub", collection: "c", client: "me", since: 1 }]);
  const [mutate] = replica.localEdit(new Map([["a", 1], ["z", 26]]));
  assert.equal(mutate.type, "mutate");
  assert.equal(mutate.id, "z");
  const effects = replica.onMessage({ type: "reject", mutation_id: mutate.mutation_id, reason: "down", retryable: true, current: null });
  assert.equal(effects.retry, true);
  assert.equal(replica.pending[0].state, "queued");
  assert.equal(replica.resend().length, 1);
  assert.equal(replica.onMessage({ type: "surprise" }).error, 'unknown message type "surprise"');
});
