// A backfill watched while it runs: its page's calendar of partitions fills in with green
// days, without a reload, until every day is built; the backfills page lists it.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bin, browser, serve, shot } from "../lib.js";

const DAYS = 30;
const GATED_AFTER = 10; // days after the 10th wait for the test to create `go`

let dir, graph, server, chrome, page, driver;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "databuild-e2e-backfill-"));
  mkdirSync(join(dir, "jobs"));
  graph = join(dir, "databuild.toml");
  writeFileSync(graph, [
    "[graph]", 'label = "backfill"', "",
    "[[jobs]]", 'label = "day"', 'entrypoint = ["jobs/day"]', "produces = ['day/.+']", "",
  ].join("\n"));
  const job = join(dir, "jobs", "day");
  writeFileSync(job, `#!/bin/sh
if [ "$1" = config ]; then
  shift; sep=""; printf '{"configs":['
  for r in "$@"; do
    printf '%s{"outputs":[{"str":"%s"}],"inputs":[],"args":["%s"]}' "$sep" "$r" "$r"; sep=,
  done
  printf ']}\\n'; exit 0
fi
day=$(echo "$2" | sed 's/.*-0*//')
if [ "$day" -gt ${GATED_AFTER} ]; then
  i=0; while [ ! -e go ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done
fi
echo "built $2"
`);
  chmodSync(job, 0o755);
  // Only the backfill's driver builds.
  server = await serve(graph, 0, ["--no-reconcile"]);
  chrome = await browser();
  page = await chrome.newPage({ viewport: { width: 1200, height: 800 } });
  page.setDefaultTimeout(60_000);
});

after(async () => {
  writeFileSync(join(dir, "go"), "");
  if (driver && driver.exitCode === null && driver.signalCode === null) {
    await new Promise((done) => { driver.once("exit", done); driver.kill("SIGKILL"); });
  }
  await chrome?.close();
  await server?.kill();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts `databuild backfill start` in the background; resolves with the backfill's id. */
function startBackfill(args) {
  return new Promise((resolve, reject) => {
    driver = spawn(bin, ["--graph", graph, "backfill", "start", ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    driver.stderr.on("data", (d) => {
      err += d;
      const m = err.match(/backfill (backfill-\S+) `/);
      if (m) resolve(m[1]);
    });
    driver.once("exit", (code) => reject(new Error(`backfill start exited with ${code} before saying its id: ${err}`)));
  });
}

const satisfied = () => page.locator("#backfill-grid a.cell.c-satisfied").count();

test("a running backfill's calendar fills in live until every day is built", async () => {
  const id = await startBackfill([`day/date=[2025-01-01..2025-01-${DAYS}]`, "--name", "january", "--chunk", "5", "-j", "1"]);
  await page.goto(`${server.url}/backfills/${encodeURIComponent(id)}`);
  await page.waitForSelector("#conn[data-state=live]");
  await page.evaluate(() => { window.__noReload = true; });
  assert.equal(await page.locator("#backfill-grid a.cell").count(), DAYS, "one cell a day");
  assert.equal(await page.locator("#backfill-grid .month:not(.weekdays) .month-label").textContent(), "January 2025");

  // The first days are built while the page is open; the rest wait for the gate.
  await page.waitForFunction((n) => document.querySelectorAll("#backfill-grid a.cell.c-satisfied").length >= n, GATED_AFTER);
  const first = await satisfied();
  assert.equal(first, GATED_AFTER);
  assert.match(await page.locator("#backfill-status").textContent(), /RUNNING/);
  assert.equal(await page.locator("#n-built").textContent(), `${GATED_AFTER}/${DAYS}`);
  assert.match(await page.locator("#eta").textContent(), /^in /);
  assert.equal(await page.locator("#cancel-backfill").count(), 1);
  assert.match(await page.locator('#backfill-grid a.cell[data-date="2025-01-11"]').getAttribute("class"), /c-pending/);
  assert.match(await page.locator('#backfill-grid a.cell[data-date="2025-01-10"]').getAttribute("title"), /day\/date=2025-01-10: satisfied/);
  await shot(page, "20-backfill-running");

  writeFileSync(join(dir, "go"), "");
  // More days turn green, then all of them, in the open page.
  await page.waitForFunction((n) => document.querySelectorAll("#backfill-grid a.cell.c-satisfied").length > n, first);
  const later = await satisfied();
  assert.ok(later > first, `${later} built days after ${first}`);
  await page.waitForFunction((n) => document.querySelectorAll("#backfill-grid a.cell.c-satisfied").length === n, DAYS, { timeout: 90_000 });
  await page.waitForFunction(() => document.querySelector("#backfill-status")?.textContent.includes("COMPLETED"));
  assert.equal(await page.locator("#n-built").textContent(), `${DAYS}/${DAYS}`);
  assert.equal(await page.locator("#cancel-backfill").count(), 0, "a finished backfill has no Cancel");
  assert.equal(await page.evaluate(() => window.__noReload), true, "the backfill page reloaded instead of updating live");
  await shot(page, "21-backfill-completed");

  // The backfills page lists it, linked.
  await page.click('header nav a[href="/backfills"]');
  const row = page.locator(`#backfills tr[data-backfill="${id}"]`);
  assert.equal(await row.locator("td.progress").textContent(), `${DAYS}/${DAYS}`);
  assert.match(await row.textContent(), /january/);
  await shot(page, "22-backfills");
  await row.locator("a.backfill").click();
  await page.waitForURL(/\/backfills\/backfill-/);
});
