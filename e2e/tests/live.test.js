// A run watched while it runs: its task turns from running to green and its job's log
// streams into the open page, with no reload.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { browser, serve, shot } from "../lib.js";

let dir, server, chrome, page;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "databuild-e2e-live-"));
  mkdirSync(join(dir, "jobs"));
  writeFileSync(join(dir, "databuild.toml"), [
    "[graph]", 'label = "live"', "",
    "[[jobs]]", 'label = "gated"', 'entrypoint = ["jobs/gated"]', "produces = ['gated/.+']", "",
    "[[jobs]]", 'label = "after_gate"', 'entrypoint = ["jobs/after_gate"]', "produces = ['after/.+']", "",
  ].join("\n"));
  const job = (name, inputs, body) => {
    const path = join(dir, "jobs", name);
    writeFileSync(path, `#!/bin/sh
if [ "$1" = config ]; then
  shift; sep=""; printf '{"configs":['
  for r in "$@"; do
    printf '%s{"outputs":[{"str":"%s"}],"inputs":[${inputs}],"args":["%s"]}' "$sep" "$r" "$r"; sep=,
  done
  printf ']}\\n'; exit 0
fi
${body}
`);
    chmodSync(path, 0o755);
  };
  // Prints a line, waits (at most ~60 s) for the test to create `go`, prints another.
  job("gated", "", `echo "first line of $2"
i=0; while [ ! -e go ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done
echo "second line after the gate"`);
  job("after_gate", `{"depType":"MATERIALIZE","partitionRef":{"str":"gated/1"}}`, `echo "after the gate"`);
  server = await serve(join(dir, "databuild.toml"));
  chrome = await browser();
  page = await chrome.newPage({ viewport: { width: 1200, height: 700 } });
  page.setDefaultTimeout(60_000);
});

after(async () => {
  writeFileSync(join(dir, "go"), "");
  await chrome?.close();
  await server?.kill();
  rmSync(dir, { recursive: true, force: true });
});

test("a running task turns green and its log streams into the open page", async () => {
  await page.goto(server.url + "/");
  await page.fill("#build-refs", "after/1");
  await page.click("#build-form button[type=submit]");
  await page.waitForURL(/\/runs\/[^/]+$/);
  await page.evaluate(() => { window.__noReload = true; });
  const gated = page.locator('#run-dag g.node[data-id="gated/1"]');
  const next = page.locator('#run-dag g.node[data-id="after/1"]');
  await gated.and(page.locator(".s-running")).waitFor();
  assert.match(await next.getAttribute("class"), /s-pending/);
  await page.waitForFunction(() => document.querySelector("#run-status")?.textContent.match(/RUNNING|ANALYZED|STARTED/));
  await shot(page, "12-run-in-progress");

  // The gated job's page, opened while it runs: its first line is there, the second streams in.
  const runUrl = page.url();
  await page.locator("table.timeline tbody tr", { hasText: "gated" }).locator("a").first().click();
  await page.waitForURL(/\/job-runs\//);
  await page.evaluate(() => { window.__noReload = true; });
  await page.waitForFunction(() => document.querySelector("#log")?.textContent.includes("first line of gated/1"));
  assert.match(await page.locator("#job-status").textContent(), /RUNNING/);
  await shot(page, "13-job-log-streaming");
  writeFileSync(join(dir, "go"), "");
  await page.waitForFunction(() => document.querySelector("#log")?.textContent.includes("second line after the gate"));
  await page.waitForFunction(() => document.querySelector("#job-status")?.textContent.includes("SUCCESS"));
  assert.equal(await page.evaluate(() => window.__noReload), true, "the job page reloaded");

  await page.goto(runUrl);
  await page.waitForFunction(() => document.querySelector("#run-status")?.textContent.includes("SUCCESS"));
  assert.match(await gated.getAttribute("class"), /s-success/);
  assert.match(await next.getAttribute("class"), /s-success/);
});
