// Shared pieces of the dashboard's end-to-end tests: a copy of the example graph in a
// temporary directory, a real `databuild serve` on it, and headless Chromium.
import { spawn, execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "..");
export const bin = process.env.DATABUILD_BIN || join(repo, "target", "debug", "databuild");
/** Where the tests write their screenshots. */
export const screenshots = process.env.DATABUILD_SCREENSHOTS || join(repo, "target", "dashboard-screenshots");
mkdirSync(screenshots, { recursive: true });

/** A fresh copy of examples/basic with `catalog/podcasts` registered; returns its graph file. */
export function exampleGraph(extraRefs = []) {
  const dir = mkdtempSync(join(tmpdir(), "databuild-e2e-"));
  cpSync(join(repo, "examples", "basic"), dir, {
    recursive: true,
    filter: (src) => !src.includes(".databuild") && !src.includes(join("data", "out")),
  });
  const graph = join(dir, "databuild.toml");
  databuild(graph, ["partitions", "register", "catalog/podcasts", ...extraRefs]);
  return { dir, graph, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs the CLI on `graph` and returns its stdout. */
export function databuild(graph, args, input) {
  return execFileSync(bin, ["--graph", graph, ...args], { encoding: "utf8", input });
}

/** Starts `databuild serve` on `graph` (`port` 0: any; `extra` flags) and resolves once it listens. */
export function serve(graph, port = 0, extra = []) {
  return new Promise((resolveServer, reject) => {
    const child = spawn(bin, ["serve", "--graph", graph, "--addr", `127.0.0.1:${port}`, "-j", "2", ...extra], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`databuild serve did not start within 30 s: ${err}`));
    }, 30_000);
    child.stderr.on("data", (d) => { err += d; });
    child.stdout.on("data", (d) => {
      out += d;
      const line = out.split("\n")[0];
      if (out.includes("\n") && line.startsWith("http://")) {
        clearTimeout(timer);
        resolveServer({
          url: line.trim(),
          port: Number(new URL(line.trim()).port),
          child,
          kill: () => new Promise((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            child.once("exit", () => done());
            child.kill("SIGKILL");
          }),
        });
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`databuild serve exited with ${code}: ${err}`));
    });
  });
}

/** Headless Chromium as ENGINES.md describes it (Debian's package, no download). */
export async function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
    ],
  });
}

/** Saves a full-page screenshot as `<name>.png` in the screenshots folder. */
export async function shot(page, name) {
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
}
