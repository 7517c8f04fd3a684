// Takes the screenshots in docs/ (run by hand: node tests/browser/screenshots.mjs after cargo build):
// the dashboard with some traffic, and both demos.
import { join } from "node:path";
import { WebSocket } from "ws";
import { browser, serve, ROOT } from "./support.mjs";

const chromium = await browser();
const server = await serve();
const context = await chromium.newContext({ viewport: { width: 1200, height: 900 } });
try {
  const [ada, bob] = [await context.newPage(), await context.newPage()];
  for (const [page, name] of [[ada, "ada"], [bob, "bob"]]) {
    await page.goto(`${server.http}/demo/chat`);
    await page.fill("#name", name);
    await page.fill("#room", "lobby");
    await page.click("#join-button");
    await page.waitForSelector("#connection.open");
  }
  for (const [page, text] of [[ada, "Hi Bob, the dashboard lists us both"], [bob, "And the room's topic, with 2 subscribers"], [ada, "Try closing one of us from there"]]) {
    await page.fill("#text", text);
    await page.click("#send");
  }
  await ada.waitForTimeout(300);
  await ada.screenshot({ path: join(ROOT, "docs", "demo-chat.png") });

  const [one, two] = [await context.newPage(), await context.newPage()];
  for (const page of [one, two]) {
    await page.goto(`${server.http}/demo/store`);
    await page.waitForSelector("#status.synced");
  }
  await one.fill("#title", "Team dinner");
  await one.fill("#place", "The corner bistro");
  await two.fill("#guests", "12");
  await two.fill("#notes", "Bob books the table; Ada brings dessert.");
  await one.waitForFunction(() => document.querySelector("#notes").value.includes("dessert") && document.querySelector("#guests").value === "12");
  await one.screenshot({ path: join(ROOT, "docs", "demo-store.png") });

  const echo = new WebSocket(`${server.ws}/echo`);
  await new Promise((resolve) => echo.once("open", resolve));
  const shout = new WebSocket(`${server.ws}/websockets/v4/service/my-endpoint`);
  await new Promise((resolve) => shout.once("open", resolve));
  const timer = setInterval(() => echo.send("ping"), 50);
  const dashboard = await context.newPage();
  await dashboard.goto(`${server.http}/`);
  await dashboard.waitForSelector("#live.open");
  await dashboard.waitForTimeout(6000);
  await dashboard.screenshot({ path: join(ROOT, "docs", "dashboard.png"), fullPage: true });
  clearInterval(timer);
  echo.close();
  shout.close();
} finally {
  await chromium.close();
  await server.stop();
}
console.log("docs/dashboard.png, docs/demo-chat.png, docs/demo-store.png");
