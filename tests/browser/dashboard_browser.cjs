// Drives Debian's chromium (headless) through the master's dashboard, for
// tests/integration/dashboard_browser_test.cc, which starts the cluster and the tasks.
//   node dashboard_browser.cjs BASE_URL TOKEN SERVER_ID SCREENSHOT
// Needs playwright-core (tools/install-deps.sh puts it in /var/cache/clupy-npm; NODE_PATH
// points there). Prints "OK ..." and exits 0, or prints "FAIL <why>" and exits 1; the
// screenshot is saved either way.
"use strict";
const { chromium } = require("playwright-core");

const [baseUrl, token, serverId, screenshot] = process.argv.slice(2);
const executablePath = process.env.CLUPY_CHROMIUM || "/usr/bin/chromium";

async function textOf(page, selector) {
  return (await page.locator(selector).first().textContent()) || "";
}

async function main() {
  const browser = await chromium.launch({
    executablePath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const problems = [];
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1100 } });
    page = await context.newPage();
    page.on("console", (message) => {
      if (message.type() === "error") problems.push("console error: " + message.text());
    });
    page.on("pageerror", (error) => problems.push("page error: " + error.message));
    page.on("response", (response) => {
      if (response.status() >= 400) problems.push("HTTP " + response.status() + " " + response.url());
    });

    // The token once in the address: the master answers with a cookie and the address without it.
    await page.goto(baseUrl + "/?token=" + encodeURIComponent(token));
    if (page.url().includes("token=")) throw new Error("the token stayed in the address: " + page.url());
    if ((await page.content()).includes(token)) throw new Error("the page shows the token");
    const cookies = await context.cookies();
    const cookie = cookies.find((c) => c.name === "clupy_dashboard");
    if (!cookie || !cookie.httpOnly) throw new Error("no HttpOnly dashboard cookie: " + JSON.stringify(cookies));
    if (cookie.value.includes(token)) throw new Error("the cookie carries the token itself");

    // A server that registered.
    await page.waitForFunction(
      (id) => [...document.querySelectorAll("#servers tbody tr td:first-child")].some((td) => td.textContent === id),
      serverId, { timeout: 30000 });
    const state = await textOf(page, "#servers tbody tr td:nth-child(3)");

    // A task count that moves while tasks run.
    await page.waitForFunction(() => Number(document.querySelector("#total-completed").textContent) > 0,
                               null, { timeout: 60000 });
    const first = Number(await textOf(page, "#total-completed"));
    await page.waitForFunction(
      (before) => Number(document.querySelector("#total-completed").textContent) > before, first,
      { timeout: 60000 });
    const second = Number(await textOf(page, "#total-completed"));

    // A failed task with its message, and its output one click away.
    await page.waitForFunction(
      () => [...document.querySelectorAll("#failures tbody tr")].some((tr) => tr.textContent.includes("dashboard boom")),
      null, { timeout: 90000 });
    const failure = page.locator("#failures tbody tr", { hasText: "dashboard boom" }).first();
    const failureText = (await failure.textContent()) || "";
    await failure.click();
    await page.waitForFunction(
      () => document.querySelector("#output-text").textContent.includes("is about to fail"), null,
      { timeout: 15000 });
    const output = await textOf(page, "#output-text");
    // The chart has drawn points for the completed series.
    const points = await page.locator('#chart path[data-series="completed"]').getAttribute("d");
    await page.waitForTimeout(1500);  // one more poll, so the screenshot shows the latest
    await page.screenshot({ path: screenshot, fullPage: true });

    // The sign-in form, in a fresh context: a wrong token is refused, the right one lets in.
    const login = await (await browser.newContext()).newPage();
    await login.goto(baseUrl + "/");
    await login.fill('input[name="token"]', "not-the-token");
    await login.click('button[type="submit"]');
    const refusal = await textOf(login, ".error");
    if (!refusal.includes("not the cluster token")) throw new Error("wrong token not refused: " + refusal);
    await login.fill('input[name="token"]', token);
    await login.click('button[type="submit"]');
    await login.waitForSelector("#servers", { timeout: 10000 });

    if (problems.length) throw new Error(problems.join("; "));
    console.log("OK server_state=" + state + " completed=" + first + "->" + second +
                " failure=" + JSON.stringify(failureText.slice(0, 200)) +
                " output=" + JSON.stringify(output.slice(0, 200)) +
                " chart_points=" + (points.match(/[ML]/g) || []).length);
  } catch (error) {
    if (page) await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
    console.log("FAIL " + error.message + (problems.length ? " (also: " + problems.join("; ") + ")" : ""));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.log("FAIL " + error.stack);
  process.exitCode = 1;
});
