// The DR dashboard against a lab: it shows the topology, runs a switchover
// both ways from the page (plan, confirmation, steps and verification live),
// reflects a killed data center within 2 s, and runs the failover. Started by
// crates/cli/tests/e2e/browser.rs with PCHAT_URL (chat3: a server of the
// backup data center, which lives through the primary's loss), PCHAT_BIN,
// PCHAT_LAB_DIR and PCHAT_ADMIN.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { run, newPage, signIn, shot, apiCall, token } from "./lib.mjs";

const base = process.env.PCHAT_URL;
const lab = process.env.PCHAT_LAB_DIR;
const [adminName, adminPw] = process.env.PCHAT_ADMIN.split(":");

await run(async (browser, pages) => {
  const page = await newPage(browser, { deadServers: true, viewport: { width: 1400, height: 1100 } });
  pages.push(page);
  // chat3 is inactive: the chat page signs in through an active server.
  await signIn(page, base, adminName, adminPw);
  await page.getByRole("link", { name: "Topology" }).click();
  await page.waitForURL(/\/admin\/topology$/);

  // The topology: both data centers, four chat and four database servers.
  const dc1 = page.locator('[data-dc="dc1"]');
  const dc2 = page.locator('[data-dc="dc2"]');
  await dc1.locator(".node").nth(3).waitFor();
  await dc2.locator(".node").nth(3).waitFor();
  assert.equal(await page.locator("#pool-state").textContent(), "Normal");
  for (const name of ["chat1", "chat2", "db1", "db2"]) assert.equal(await dc1.locator(`[data-server="${name}"] .pill`, { hasText: /^up$/ }).count(), 1, name);
  for (const name of ["chat3", "chat4", "db3", "db4"]) assert.equal(await dc2.locator(`[data-server="${name}"] .pill`, { hasText: /^up$/ }).count(), 1, name);
  await dc1.locator('[data-server="chat1"] .pill', { hasText: /^active$/ }).waitFor();
  await dc2.locator('[data-server="chat3"] .pill', { hasText: "inactive" }).waitFor();
  await dc1.locator('[data-server="db1"]', { hasText: "principal synchronized" }).first().waitFor();
  await dc2.locator('[data-server="db3"] .logship', { hasText: "secondary" }).first().waitFor();
  // The primary mirror's backup job stands by: no "no log backup" alert.
  await dc1.locator('[data-server="db2"] .logship', { hasText: "standing by" }).first().waitFor();
  assert.equal(await page.locator(".logship .pill.bad").count(), 0, "no log-shipping alert in a healthy pool");
  // Chat traffic shows in the posts/s and ack latency charts.
  const active = process.env.PCHAT_ACTIVE_URL;
  const t = await token(active, adminName, adminPw);
  const cat = await apiCall(active, t, "POST", "/api/v1/categories", { name: "ops" });
  const room = await apiCall(active, t, "POST", "/api/v1/rooms", { name: "ops", category: cat.id, privacy: "open" });
  const until = Date.now() + 2500;
  for (let i = 0; Date.now() < until; i++) {
    await apiCall(active, t, "POST", `/api/v1/rooms/${room.id}/messages`, { body: `load ${i}`, client_msg_id: `load-${i}` });
  }
  await page.waitForFunction(() => {
    const s = window.pchatDashboard.last()?.samples || [];
    return s.some((x) => x.posts_per_s > 0) && s.some((x) => x.ack_p99_ms > 0);
  });
  await page.locator("#chart-posts polyline").waitFor();
  await shot(page, "dashboard", { fullPage: true });

  // A switchover from the page: the plan, a confirmation, then the steps
  // and the verification as they happen.
  async function runFromPage(name, stateAfter) {
    await page.getByRole("button", { name: `Plan ${name}` }).click();
    await page.locator("#plan-lines", { hasText: "preflight checks" }).waitFor({ timeout: 30000 });
    await page.getByRole("button", { name: `Run ${name}…` }).click();
    await page.locator("#confirm").getByRole("button", { name: `Run ${name}` }).click();
    await page.locator("#run-state", { hasText: /running|succeeded/ }).waitFor();
    await page.locator("#run-state", { hasText: /succeeded|failed/ }).waitFor({ timeout: 120000 });
    const lines = await page.locator("#run-lines").textContent();
    assert.equal(await page.locator("#run-state").textContent(), "succeeded", lines);
    await page.locator("#run-verification table.verify").first().waitFor();
    await page.locator("#pool-state", { hasText: stateAfter }).waitFor({ timeout: 5000 });
  }
  await runFromPage("switchover", "FailedOver");
  await dc2.locator('[data-server="chat3"] .pill', { hasText: /^active$/ }).waitFor({ timeout: 5000 });
  // The new pair in the backup data center, synchronized.
  await dc2.locator('[data-server="db3"]', { hasText: "principal synchronized" }).waitFor({ timeout: 5000 });
  await dc2.locator('[data-server="db4"]', { hasText: "mirror synchronized" }).waitFor({ timeout: 5000 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot(page, "dashboard-switchover", { fullPage: true });

  // And back: with the pool failed over, a switchover is a failback.
  await runFromPage("switchover", "Normal");
  await dc1.locator('[data-server="chat1"] .pill', { hasText: /^active$/ }).waitFor({ timeout: 5000 });
  await dc1.locator('[data-server="db2"]', { hasText: "mirror synchronized" }).first().waitFor({ timeout: 5000 });

  // Power cut in the primary data center: shown within 2 s.
  const r = spawnSync(process.env.PCHAT_BIN, ["lab", "kill-dc", "primary", "--dir", lab], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const killed = Date.now();
  for (const name of ["chat1", "chat2", "db1", "db2"]) await dc1.locator(`[data-server="${name}"].down`).waitFor({ timeout: 10000 });
  const shown = Date.now() - killed;
  console.log(`killed data center shown after ${shown} ms`);
  assert.ok(shown <= 2000, `the dashboard took ${shown} ms to show the killed data center`);
  assert.equal(await dc2.locator(".node.down").count(), 0);
  await shot(page, "dashboard-dc-lost", { fullPage: true });

  // The dashboard, open on a server of the backup data center, runs the
  // failover although the databases that knew the session are gone: after
  // half a minute the server's 30 s session cache has expired, so what lets
  // the administrator in is the dashboard's grace for sessions it checked.
  await page.waitForTimeout(31000);
  await page.locator("#updated").waitFor();
  assert.equal(await page.locator("#dash-error").textContent(), "", "the dashboard still answers");
  await runFromPage("failover", "FailedOver");
  await dc2.locator('[data-server="chat3"] .pill', { hasText: /^active$/ }).waitFor({ timeout: 5000 });
  await dc2.locator('[data-server="chat3"]', { hasText: "serving" }).waitFor({ timeout: 5000 });

  // The API behind the page refuses what it must, with stable codes.
  const tok = await page.evaluate(() => sessionStorage.getItem("pchat.token"));
  const start = async (name, confirm) => {
    const res = await fetch(`${base}/api/v1/admin/runbooks/${name}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${tok}`, "Content-Type": "application/json" },
      body: JSON.stringify({ confirm }),
    });
    return { status: res.status, body: await res.json() };
  };
  let res = await start("failback", "yes");
  assert.equal(res.status, 422, JSON.stringify(res.body));
  assert.equal(res.body.error.code, "invalid_value");
  res = await start("reboot", "reboot");
  assert.equal(res.body.error.code, "not_found");
  // Two runs at once: one starts, the other is refused. This failback then
  // fails its preflight (the primary data center is not rebuilt), and the
  // page says so.
  const both = await Promise.all([start("failback", "failback"), start("failback", "failback")]);
  assert.deepEqual(both.map((r) => r.status).sort(), [202, 409], JSON.stringify(both));
  assert.equal(both.find((r) => r.status === 409).body.error.code, "runbook_running");
  await page.locator("#run-state", { hasText: "failed" }).waitFor({ timeout: 30000 });
  await page.locator("#run-lines", { hasText: "refused" }).waitFor();
});
