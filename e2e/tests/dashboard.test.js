// The dashboard in a real browser against a real `databuild serve` on the example graph.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { browser, exampleGraph, serve, shot } from "../lib.js";

const REPORT = "reports/weekly/week=2025-01-06";
// Refs that must survive URLs and HTML: markup, and characters URLs treat specially.
const XSS = "odd/<img src=x onerror=\"window.__xss=1\">";
const SCRIPT = "odd/<script>window.__xss=2</script>";
const ODD = "odd/a b?c#d=é/ü&x=%41";
const BULK = Array.from({ length: 120 }, (_, i) => `bulk/n=${String(i).padStart(3, "0")}`);

let g, server, chrome, page;

before(async () => {
  g = exampleGraph([XSS, SCRIPT, ODD, ...BULK]);
  server = await serve(g.graph);
  chrome = await browser();
  page = await chrome.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(60_000);
});

after(async () => {
  await chrome?.close();
  await server?.kill();
  g?.cleanup();
});

const allSucceeded = () => {
  const nodes = [...document.querySelectorAll("#run-dag g.node")];
  return nodes.length > 0 && nodes.every((n) => n.classList.contains("s-success"));
};

/** Waits, on a run page, until every task is green and the run says SUCCESS. */
async function waitForGreenRun() {
  await page.waitForSelector("#run-dag g.node");
  await page.waitForFunction(allSucceeded, null, { timeout: 90_000 });
  await page.waitForFunction(() => document.querySelector("#run-status")?.textContent.includes("SUCCESS"));
}

test("build from the home page, watch the run go green, then invalidate and rebuild through the lineage", async () => {
  await page.goto(server.url + "/");
  await page.waitForSelector("#conn[data-state=live]");
  await page.fill("#build-refs", REPORT);
  await shot(page, "01-home-before-build");
  await page.click("#build-form button[type=submit]");
  await page.waitForURL(/\/runs\/[^/]+$/);
  const runUrl = page.url();
  // A marker on the window: it survives only if the page is updated in place (SSE), not reloaded.
  await page.evaluate(() => { window.__noReload = true; });
  await waitForGreenRun();
  assert.equal(await page.evaluate(() => window.__noReload), true, "the run page reloaded instead of updating live");
  const tasks = await page.locator("#run-dag g.node").count();
  assert.ok(tasks >= 5, `the job graph has ${tasks} tasks`);
  assert.ok(await page.locator("#run-dag path.edge").count() >= tasks - 1, "the picture has edges");
  await page.waitForSelector("table.timeline tbody tr");
  await shot(page, "02-run-success");

  // A job run's page shows its log.
  await page.locator("table.timeline tbody tr a").first().click();
  await page.waitForURL(/\/job-runs\//);
  assert.match(await page.locator("#job-status").textContent(), /SUCCESS/);
  await shot(page, "03-job-run-log");

  // The report's page: status, why, manifest and the lineage picture.
  await page.goto(runUrl);
  await page.locator("p.requested a", { hasText: REPORT }).click();
  await page.waitForURL(/\/partition\?ref=/);
  assert.equal(await page.locator("h1").textContent(), REPORT);
  assert.match(await page.locator("#partition-status").textContent(), /AVAILABLE/);
  assert.match(await page.locator("#why").textContent(), /AVAILABLE, built by graph run/);
  const lineage = page.locator("#lineage g.node");
  assert.ok(await lineage.count() >= 3, "the lineage picture shows upstream partitions");
  assert.equal(await page.locator("#lineage g.node.focus").getAttribute("data-ref"), REPORT);
  await shot(page, "04-partition-lineage");

  // Follow the picture to an upstream partition, invalidate it, and rebuild it from its page.
  const upstream = await page.locator('#lineage g.node[data-ref^="reviews/daily/"]').first().getAttribute("data-ref");
  await page.locator(`#lineage g.node[data-ref="${upstream}"]`).click();
  await page.waitForFunction((r) => document.querySelector("h1")?.textContent === r, upstream);
  const upstreamUrl = page.url();
  await page.click("#invalidate");
  await page.waitForFunction(() => document.querySelector("#partition-status")?.textContent.includes("STALE"));
  assert.match(await page.locator("#why").textContent(), /invalidated: from the dashboard/);
  await shot(page, "05-partition-invalidated");
  // Invalidation reaches the report downstream at once.
  await page.goto(server.url + "/partition?ref=" + encodeURIComponent(REPORT));
  assert.match(await page.locator("#partition-status").textContent(), /STALE/);
  await page.goto(upstreamUrl);
  await page.click("#build");
  await page.waitForURL(/\/runs\/[^/]+$/);
  assert.notEqual(page.url(), runUrl);
  await waitForGreenRun();
  await page.goto(upstreamUrl);
  assert.match(await page.locator("#partition-status").textContent(), /AVAILABLE/);

  // The report is still stale, built from the old upstream; its why follows the cause to the
  // rebuilt partition, and its Build button rebuilds it.
  await page.goto(server.url + "/partition?ref=" + encodeURIComponent(REPORT));
  assert.match(await page.locator("#partition-status").textContent(), /STALE/);
  assert.ok((await page.locator("#why").textContent()).includes(`\`${upstream}\` is AVAILABLE`));
  assert.equal(await page.locator("#build").textContent(), "Build (job weekly_report)");
  await page.click("#build");
  await page.waitForURL(/\/runs\/[^/]+$/);
  await waitForGreenRun();
  await page.goto(server.url + "/partition?ref=" + encodeURIComponent(REPORT));
  assert.match(await page.locator("#partition-status").textContent(), /AVAILABLE/);
  const history = await page.locator("table.history tbody tr").allTextContents();
  assert.ok(history.some((r) => r.includes("STALE")), "the history shows the STALE event");
  assert.ok(history.filter((r) => r.includes("AVAILABLE")).length >= 2, "and both builds");

  // Home now lists both runs; jobs have statistics.
  await page.goto(server.url + "/");
  assert.ok(await page.locator("section[data-live=runs] tbody tr").count() >= 2);
  await shot(page, "06-home-after-builds");
  await page.goto(server.url + "/jobs");
  const row = page.locator("#jobs tbody tr", { hasText: "weekly_report" });
  assert.match(await row.textContent(), /100%/);
  await shot(page, "07-jobs");
});

test("partition search pages through refs by prefix, pattern and status", async () => {
  await page.goto(server.url + "/partitions");
  await page.fill("#search-q", "bulk/");
  await page.click("form.search button");
  await page.waitForURL(/q=bulk/);
  const refs = async () => page.locator("#results tbody tr a.ref").allTextContents();
  const first = await refs();
  assert.deepEqual(first, BULK.slice(0, 50));
  await shot(page, "08-partitions-search");
  await page.click("#next-page");
  assert.deepEqual(await refs(), BULK.slice(50, 100));
  await page.click("#next-page");
  assert.deepEqual(await refs(), BULK.slice(100));
  assert.equal(await page.locator("#next-page").count(), 0);

  await page.goto(server.url + "/partitions?q=" + encodeURIComponent("*=1?9"));
  assert.deepEqual(await refs(), [], "? is not a wildcard");
  await page.goto(server.url + "/partitions?q=" + encodeURIComponent("bulk/n=*9"));
  assert.equal((await refs()).length, 12);
  await page.goto(server.url + "/partitions?q=odd/&status=available");
  assert.deepEqual((await refs()).sort(), [ODD, SCRIPT, XSS].sort());
  await page.goto(server.url + "/partitions?status=failed");
  assert.equal(await page.locator("#no-results").count(), 1);
});

test("refs with markup are shown as text and odd characters survive links", async () => {
  for (const r of [XSS, SCRIPT]) {
    await page.goto(server.url + "/partition?ref=" + encodeURIComponent(r));
    assert.equal(await page.locator("h1").textContent(), r);
    assert.equal(await page.locator("#build").count(), 0, "no job produces registered external data");
    await page.goto(server.url + "/partitions?q=odd/");
    assert.ok((await page.locator("#results a.ref").allTextContents()).includes(r));
  }
  assert.equal(await page.evaluate(() => window.__xss), undefined, "markup in a ref was executed");
  await page.goto(server.url + "/partitions?q=odd/");
  await page.locator("#results a.ref", { hasText: "odd/a b" }).click();
  assert.equal(await page.locator("h1").textContent(), ODD);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await shot(page, "09-partition-odd-ref");
});

test("the wants page lists a want with its status, and the want's page cancels it", async () => {
  const res = await page.request.post(server.url + "/api/v1/wants", { data: { refs: [REPORT], sla: "6h" } });
  assert.equal(res.status(), 200, await res.text());
  const id = (await res.json()).wants[0].wantId;
  await page.goto(server.url + "/");
  await page.click("header nav a[href='/wants']");
  await page.waitForURL(/\/wants$/);
  const row = page.locator(`#wants tr[data-want="${id}"]`);
  // Served with a reconciler, the want may already be satisfied.
  assert.match(await row.locator(".badge").textContent(), /^(ACTIVE|SATISFIED)$/);
  assert.equal(await row.locator("a.ref").first().textContent(), REPORT);
  await shot(page, "14-wants");
  await row.locator("a.want").click();
  await page.waitForURL(/\/wants\/want-/);
  assert.match(await page.locator("#waiting-for").textContent(), /^waiting for /);
  await page.click("#cancel-want");
  await page.waitForFunction(() => document.querySelector("#want-status")?.textContent.includes("CANCELLED"));
  const history = await page.locator("#want-history tbody tr").allTextContents();
  assert.ok(history.some((r) => r.includes("cancelled by anonymous@loopback (dashboard)")), history.join("\n"));
  await shot(page, "15-want-cancelled");
  await page.goto(server.url + "/wants?status=cancelled");
  assert.equal(await page.locator(`#wants tr[data-want="${id}"]`).count(), 1);
});

test("unknown runs, job runs, refs and pages get a friendly 404 page", async () => {
  for (const [path, text] of [
    ["/runs/no-such-run", "There is no graph run `no-such-run`"],
    ["/job-runs/no-such-job-run", "There is no job run `no-such-job-run`"],
    ["/partition?ref=" + encodeURIComponent("reviews/daily/date=2031-01-01"), "has never been built; job `daily_summary` produces it"],
    ["/no/such/page", "There is no page at `/no/such/page`"],
  ]) {
    const res = await page.goto(server.url + path);
    assert.equal(res.status(), 404, path);
    assert.match(await page.locator("main").textContent(), new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")), path);
    assert.equal(await page.locator("header nav a").count(), 5, "the page keeps its navigation");
  }
  await shot(page, "10-not-found");
  const res = await page.goto(server.url + "/partition?ref=" + encodeURIComponent("bad\u0001ref"));
  assert.equal(res.status(), 400);
});

test("the page says when the service is gone and reconnects when it is back", async () => {
  await page.goto(server.url + "/");
  await page.waitForSelector("#conn[data-state=live]");
  const port = server.port;
  await server.kill();
  await page.waitForSelector("#conn[data-state=down]", { timeout: 30_000 });
  assert.match(await page.locator("#conn").textContent(), /disconnected/);
  await shot(page, "11-disconnected");
  server = await serve(g.graph, port);
  await page.waitForSelector("#conn[data-state=live]", { timeout: 30_000 });
});
