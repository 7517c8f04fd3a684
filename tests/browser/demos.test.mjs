// Both demos from two pages in Chromium: the chat (/demo/chat) with recovery after a reconnect, and
// the shared form (/demo/store) converging live, with its offline state and pending count.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withBrowserAndServer, open } from "./support.mjs";

const world = withBrowserAndServer();

async function join(page, name, room) {
  await page.fill("#name", name);
  await page.fill("#room", room);
  await page.click("#join-button");
  await page.waitForSelector("#connection.open", { timeout: 5000 });
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.click("#send");
}

const logHas = (page, text) =>
  page.waitForFunction((text) => document.querySelector("#log").textContent.includes(text), text, { timeout: 10000 });

test("the chat demo: two pages talk in a room, and one that lost its connection gets what it missed", async () => {
  const context = await world.chromium.newContext();
  const ada = await open(context, world.server, "/demo/chat");
  // Ada's connection goes through a switch the test can turn off, as a network would.
  let online = true;
  await ada.routeWebSocket(/\/chat\?/, (ws) => (online ? ws.connectToServer() : ws.close({ code: 4100, reason: "offline" })));
  await ada.reload();
  const bob = await open(context, world.server, "/demo/chat");
  await join(ada, "ada", "demo-room");
  await join(bob, "bob", "demo-room");
  await say(ada, "hello bob");
  await logHas(bob, "ada:hello bob");
  await say(bob, "hello ada");
  await logHas(ada, "bob:hello ada");
  assert.match(await bob.textContent("#members"), /2 here/);

  online = false;
  const peers = await (await fetch(`${world.server.http}/api/peers?endpoint=/chat`)).json();
  const [adas] = peers.sort((x, y) => x.connected_at - y.connected_at || y.traffic.messages_out - x.traffic.messages_out); // ada joined first
  await fetch(`${world.server.http}/api/close`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ peer: adas.id, code: 4100, reason: "network lost" }) });
  await ada.waitForSelector("#connection.reconnecting", { timeout: 5000 });
  await say(bob, "said while ada was away");
  await say(ada, "typed while offline");
  online = true;
  await logHas(ada, "missed messages recovered");
  await logHas(ada, "bob:said while ada was away");
  await logHas(bob, "ada:typed while offline");
  const log = await ada.textContent("#log");
  assert.equal(log.split("said while ada was away").length, 2, "shown once");
  assert.equal(log.split("hello ada").length, 2, "the replay does not repeat what was seen");
  await ada.click("#leave");
  await logHas(bob, "someone left");
  assert.deepEqual([...ada.problems, ...bob.problems].filter((p) => !p.includes("WebSocket")), []);
  await context.close();
});

test("the store demo: the form converges across pages, and an edit made offline goes out when back online", async () => {
  const context = await world.chromium.newContext();
  const path = `/demo/store?form=f-${Date.now()}`;
  const one = await open(context, world.server, path);
  const two = await open(context, world.server, path);
  for (const page of [one, two]) await page.waitForSelector("#status.synced", { timeout: 5000 });
  await one.fill("#title", "Team dinner");
  await two.waitForFunction(() => document.querySelector("#title").value === "Team dinner", null, { timeout: 5000 });
  await two.fill("#guests", "12");
  await one.waitForFunction(() => document.querySelector("#guests").value === "12", null, { timeout: 5000 });
  await one.waitForSelector("#status.synced");
  assert.equal(await one.textContent("#pending"), "0 pending");

  await one.click("#toggle");
  await one.waitForSelector("#status.offline");
  await one.fill("#notes", "bring dessert");
  assert.equal(await one.textContent("#pending"), "offline: the edit waits");
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await two.inputValue("#notes"), "", "the other page does not see an offline edit");
  await one.click("#toggle");
  await two.waitForFunction(() => document.querySelector("#notes").value === "bring dessert", null, { timeout: 5000 });
  await one.waitForSelector("#status.synced", { timeout: 5000 });
  assert.equal(await one.inputValue("#title"), "Team dinner");
  assert.equal(await one.inputValue("#guests"), "12");
  assert.deepEqual([...one.problems, ...two.problems], []);
  await context.close();
});
