// The dashboard in Chromium: it lists peers as they come and go, shows a script endpoint's error
// with its file and line, closes a peer and publishes to a topic, and asks for the admin token.
import { test } from "node:test";
import assert from "node:assert/strict";
import { WebSocket } from "ws";
import { withBrowserAndServer, open, serve, project } from "./support.mjs";

const FAILING = {
  "broken.websocket": JSON.stringify({ endpoint: "broken", handler: "app/broken" }),
  "app/broken.js": [
    "export function onMessage(message) {",
    "  if (message === 'fail') {",
    "    throw new Error('the handler failed on purpose');",
    "  }",
    "  return message;",
    "}",
    "",
  ].join("\n"),
  "bad.websocket": "{ not json",
};

const world = withBrowserAndServer({ args: [project(FAILING)] });

/** A Node `ws` client (a peer the dashboard should list). */
function client(path) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${world.server.ws}${path}`);
    ws.messages = [];
    ws.on("message", (data) => ws.messages.push(String(data)));
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

async function dashboard() {
  const page = await open(world.chromium, world.server, "/");
  await page.waitForSelector("#live.open");
  return page;
}

test("the dashboard lists a peer that connects and drops it when it goes", async () => {
  const page = await dashboard();
  const peer = await client("/echo?from=test");
  const peers = await (await fetch(`${world.server.http}/api/peers?endpoint=/echo`)).json();
  assert.equal(peers.length, 1);
  const row = `#peers tr[data-peer="${peers[0].id}"]`;
  await page.waitForSelector(row, { timeout: 5000 });
  assert.match(await page.textContent(row), /\/echo127\.0\.0\.1:\d+/);
  assert.match(await page.textContent('#endpoints tr[data-route="/echo"]'), /\/echonative1/);
  peer.close();
  await page.waitForSelector(row, { state: "detached", timeout: 5000 });
  assert.deepEqual(page.problems, []);
  await page.close();
});

test("the dashboard shows a script endpoint's error with its file and line, and a broken descriptor", async () => {
  const page = await dashboard();
  const peer = await client("/websockets/v4/service/broken");
  const closed = new Promise((resolve) => peer.once("close", (code, reason) => resolve({ code, reason: String(reason) })));
  peer.send("fail");
  const close = await closed;
  assert.equal(close.code, 1011);
  const row = '#scripts tr[data-endpoint="broken"]';
  await page.waitForFunction((row) => document.querySelector(row)?.textContent.includes("on purpose"), row, { timeout: 5000 });
  const text = await page.textContent(row);
  assert.match(text, /app\/broken\.js:3/, text);
  assert.match(text, /the handler failed on purpose/);
  assert.match(await page.textContent('#scripts tr[data-endpoint="bad.websocket"]'), /error/);
  await page.waitForFunction(() => document.querySelector("#errors").textContent.includes("on purpose"), null, { timeout: 5000 });
  await page.close();
});

test("a person can close a peer and publish to a topic from the dashboard", async () => {
  const page = await dashboard();
  const member = await client("/chat?room=lobby");
  const peers = await (await fetch(`${world.server.http}/api/peers?endpoint=/chat`)).json();
  await page.waitForSelector('#topics tr[data-topic="chat:lobby"]', { timeout: 5000 });
  await page.fill('#publish input[name="topic"]', "chat:lobby");
  await page.fill('#publish input[name="message"]', "hello from the dashboard");
  await page.click('#publish button[type="submit"]');
  await page.waitForFunction(() => document.querySelector("#publish-result").textContent.includes("1 subscriber"));
  const deadline = Date.now() + 5000;
  while (!member.messages.includes("hello from the dashboard") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(member.messages.includes("hello from the dashboard"), JSON.stringify(member.messages));
  const closed = new Promise((resolve) => member.once("close", (code, reason) => resolve({ code, reason: String(reason) })));
  await page.click(`#peers tr[data-peer="${peers[0].id}"] button`);
  assert.deepEqual(await closed, { code: 1000, reason: "closed from the dashboard" });
  assert.deepEqual(page.problems, []);
  await page.close();
});

test("with an admin token the dashboard asks for it, and the login form opens it", async () => {
  const guarded = await serve({ args: ["--admin-token", "let me in"] });
  try {
    const page = await world.chromium.newPage();
    const answer = await page.goto(`${guarded.http}/`);
    assert.equal(answer.status(), 401);
    await page.fill('input[name="token"]', "wrong");
    await page.click('button[type="submit"]');
    assert.match(await page.textContent("main"), /Wrong token/);
    await page.fill('input[name="token"]', "let me in");
    await page.click('button[type="submit"]');
    await page.waitForSelector("#live.open", { timeout: 5000 });
    assert.equal((await fetch(`${guarded.http}/api/overview`)).status, 401, "without the cookie");
    await page.close();
  } finally {
    await guarded.stop();
  }
});
