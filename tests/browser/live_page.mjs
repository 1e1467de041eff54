// Opens the live page of the service at argv[2] for topic argv[3] in headless Chromium,
// publishes one event with a unique id once the page says it is live, and waits for that id
// to appear on the page. Exit 0 when it does within 10 s; prints what it saw otherwise.
import { chromium } from "playwright-core";

const [base, topic] = process.argv.slice(2);
const id = "live-" + Date.now() + "-" + Math.random().toString(16).slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  await page.goto(`${base}/?topic=${encodeURIComponent(topic)}`);
  await page.waitForSelector("body[data-live=yes]", { timeout: 10000 });
  const published = Date.now();
  const response = await fetch(`${base}/publish`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ topic, event_id: id, timestamp: "2025-10-24T00:00:00Z", source: "browser-test", payload: { id } }),
  });
  if (response.status !== 200) throw new Error(`publish answered ${response.status}`);
  await page.waitForFunction((id) => document.getElementById("tail").textContent.includes(id), id, { timeout: 10000 });
  console.log(`seen on the page ${Date.now() - published} ms after the publish was sent`);
} catch (e) {
  console.error(String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
