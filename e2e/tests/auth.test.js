// Signing in to a dashboard served with `--auth`: a token buys a session that can build;
// without one the page cannot build; a page of another origin cannot submit the forms.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { browser, databuild, exampleGraph, serve, shot } from "../lib.js";

const REPORT = "reports/weekly/week=2025-01-06";

let g, server, chrome, token;

before(async () => {
  g = exampleGraph();
  token = databuild(g.graph, ["auth", "add", "alice", "--role", "build", "--file", join(g.dir, "auth.toml")]).trim();
  server = await serve(g.graph, 0, ["--auth", join(g.dir, "auth.toml")]);
  chrome = await browser();
});

after(async () => {
  await chrome?.close();
  await server?.kill();
  g?.cleanup();
});

const runCount = () => JSON.parse(databuild(g.graph, ["--json", "runs", "list", "--limit", "0"])).runs.length;

test("without a session the page asks to sign in and cannot build", async () => {
  const ctx = await chrome.newContext();
  const page = await ctx.newPage();
  await page.goto(server.url + "/");
  assert.match(page.url(), /\/sign-in\?next=/);
  assert.equal(await page.locator("#build-form").count(), 0);
  await shot(page, "auth-01-sign-in");
  const res = await page.request.post(server.url + "/actions/build", { form: { refs: REPORT, csrf: "guess" } });
  assert.equal(res.status(), 401);
  assert.equal(runCount(), 0, "a build started without a session");
  await ctx.close();
});

test("sign in with a token, then build from the dashboard", async () => {
  const ctx = await chrome.newContext();
  const page = await ctx.newPage();
  page.setDefaultTimeout(60_000);
  await page.goto(server.url + "/sign-in");
  await page.fill("#token", "dbt_wrong");
  await page.click("#sign-in-form button[type=submit]");
  assert.match(await page.locator(".form-error").textContent(), /not valid/);
  await page.fill("#token", token);
  await page.click("#sign-in-form button[type=submit]");
  await page.waitForSelector("#build-form");
  const cookies = await ctx.cookies();
  const session = cookies.find((c) => c.name === "databuild_session");
  assert.ok(session && session.httpOnly && session.sameSite === "Strict", JSON.stringify(cookies));
  await page.fill("#build-refs", REPORT);
  await page.click("#build-form button[type=submit]");
  await page.waitForURL(/\/runs\/[^/]+$/);
  await page.waitForFunction(() => document.querySelector("#run-status")?.textContent.includes("SUCCESS"), null, { timeout: 90_000 });
  assert.match(await page.locator("p.request").textContent(), /alice \(dashboard\)/);
  await shot(page, "auth-02-built");

  // A page of another origin, in the same signed-in browser, posting the forms.
  const before = runCount();
  await page.route("http://evil.example/**", (route) => route.fulfill({
    contentType: "text/html",
    body: `<form id="f" method="post" action="${server.url}/actions/build"><input name="refs" value="${REPORT}"><input name="force" value="1"><input name="csrf" value="guess"><button>go</button></form>
<form id="i" method="post" action="${server.url}/actions/invalidate"><input name="ref" value="${REPORT}"><button>go</button></form>`,
  }));
  for (const form of ["#f", "#i"]) {
    await page.goto("http://evil.example/");
    const [res] = await Promise.all([page.waitForNavigation(), page.click(`${form} button`)]);
    assert.ok([401, 403].includes(res.status()), `cross-origin ${form}: ${res.status()}`);
  }
  assert.equal(runCount(), before, "a cross-origin page started a build");
  const status = JSON.parse(databuild(g.graph, ["--json", "partitions", "show", REPORT]));
  assert.match(JSON.stringify(status), /AVAILABLE/, "a cross-origin page invalidated a partition");
  await ctx.close();
});
