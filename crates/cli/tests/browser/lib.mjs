// Shared by the browser tests: Debian's chromium through playwright-core
// (never a downloaded browser), and small helpers for the pages.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

export const SHOTS = process.env.PCHAT_SCREENSHOTS || "target/screenshots";
mkdirSync(SHOTS, { recursive: true });

export async function launch() {
  return chromium.launch({
    executablePath: process.env.PCHAT_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // The machine has no internet: keep chromium from trying to reach it.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/// A new browser context (its own storage: another user) with a page that
/// fails the test on any uncaught script error.
export async function newPage(browser, opts = {}) {
  const ctx = await browser.newContext({ viewport: opts.viewport || { width: 1280, height: 800 }, acceptDownloads: true });
  const page = await ctx.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(String(e)));
  page.log = [];
  page.on("console", (m) => {
    page.log.push(`${m.type()}: ${m.text()}`);
    // A failover test kills servers on purpose: the browser's own report of
    // a refused connection is expected there, a script error never is.
    if (opts.deadServers && /^Failed to load resource: net::ERR_CONNECTION_REFUSED/.test(m.text())) return;
    if (m.type() === "error") page.errors.push(`console: ${m.text()}`);
  });
  page.setDefaultTimeout(15000);
  return page;
}

export async function signIn(page, base, name, password) {
  await page.goto(base + "/");
  const form = page.locator("#signin-form");
  await form.getByLabel("User name").fill(name);
  await form.getByLabel("Password").fill(password);
  await form.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#app").waitFor({ state: "visible" });
}

export async function shot(page, name, opts = {}) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: !!opts.fullPage });
}

/// The room's button in the sidebar.
export function roomButton(page, name) {
  return page.locator(`#categories li.room button`, { hasText: name });
}

/// The delivered (not pending) messages shown, as [{seq, body}].
export async function shown(page) {
  return page.$$eval("#messages li.msg:not(.pending)", (lis) => lis.map((li) => ({ seq: Number(li.dataset.seq), body: li.querySelector(".text").textContent })));
}

export async function apiCall(base, token, method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

export async function token(base, name, password) {
  const res = await fetch(base + "/api/v1/sessions", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name, password }) });
  if (!res.ok) throw new Error(`sign in ${name}: ${res.status}`);
  return (await res.json()).token;
}

/// Runs the test body; prints the failure and exits non-zero on any error,
/// including uncaught script errors of the pages.
export async function run(body) {
  const browser = await launch();
  const pages = [];
  try {
    await body(browser, pages);
    for (const p of pages) if (p.errors.length) throw new Error(`script errors in the page: ${p.errors.join("; ")}`);
    console.log("ok");
  } catch (err) {
    console.error(err && err.stack ? err.stack : err);
    for (const [i, p] of pages.entries()) {
      console.error(`page ${i} console:\n${p.log.slice(-30).join("\n")}`);
      try {
        await p.screenshot({ path: join(SHOTS, `failure-${i}.png`) });
      } catch {
        /* closed */
      }
    }
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
