// The chat client through the loss of the primary data center: the page
// stays open while `pchat lab kill-dc primary` cuts the power and
// `pchat dr failover` moves the pool; the banner shows the loss and the
// return, the message typed during the outage is delivered exactly once, and
// so is an acknowledged message the data center took with it (the client
// re-sends it when told the history was rewound).
// Started by crates/cli/tests/e2e/browser.rs with PCHAT_URL (chat1),
// PCHAT_BIN, PCHAT_LAB_DIR and PCHAT_CLUSTER_SECRET_FILE.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { run, newPage, signIn, shot, roomButton, shown, apiCall, token } from "./lib.mjs";

const base = process.env.PCHAT_URL;
const lab = process.env.PCHAT_LAB_DIR;

function pchat(args) {
  const r = spawnSync(process.env.PCHAT_BIN, args, { encoding: "utf8", env: process.env });
  assert.equal(r.status, 0, `pchat ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const box = (p) => p.getByRole("textbox", { name: "Message", exact: true });

await run(async (browser, pages) => {
  const alice = await newPage(browser, { deadServers: true });
  pages.push(alice);
  await signIn(alice, base, "alice", "alice-password");
  await roomButton(alice, "ops").click();
  await alice.locator("#room-name", { hasText: "ops" }).waitFor();
  await alice.waitForFunction(() => window.pchat.wsOpen);
  await box(alice).fill("before the loss");
  await box(alice).press("Enter");
  await alice.waitForFunction(() => window.pchat.outbox.length === 0);

  // Shipped to the backup; then shipping stops, so the next acknowledged
  // message exists only in the primary data center when it dies.
  const lastLsn = (server) => JSON.parse(pchat(["db", "status", "--server", server, "--json"])).databases.find((d) => d.database === "mgc").last_lsn;
  for (let i = 0; lastLsn(process.env.PCHAT_DB3) < lastLsn(process.env.PCHAT_DB1); i++) {
    assert.ok(i < 100, "log shipping never caught up");
    await alice.waitForTimeout(100);
  }
  pchat(["db", "logship", "remove", "--server", process.env.PCHAT_DB1, "--database", "mgc"]);
  await box(alice).fill("acknowledged, never shipped");
  await box(alice).press("Enter");
  await alice.waitForFunction(() => window.pchat.outbox.length === 0);
  await alice.locator("#messages li.msg:not(.pending)", { hasText: "never shipped" }).waitFor();

  // Power cut in the primary data center: the banner says so at once.
  pchat(["lab", "kill-dc", "primary", "--dir", lab]);
  await alice.locator("#banner.lost", { hasText: "Connection lost" }).waitFor();

  // A message typed now waits in the outbox, shown as pending.
  await box(alice).fill("sent during the outage");
  await box(alice).press("Enter");
  await alice.locator("#messages li.msg.pending", { hasText: "sent during the outage" }).waitFor();
  await shot(alice, "failover-lost");

  // The runbook moves the pool to the backup data center; the client finds
  // an active server there by itself, resumes and sends what was pending.
  pchat(["dr", "failover", "--topology", join(lab, "topology.toml"), "--yes"]);
  await alice.locator("#banner.back", { hasText: "Connected again" }).waitFor({ timeout: 30000 });
  await alice.waitForFunction(() => window.pchat.outbox.length === 0, null, { timeout: 30000 });
  await alice.locator("#messages li.msg:not(.pending)", { hasText: "sent during the outage" }).waitFor();
  await alice.locator("#banner").waitFor({ state: "hidden" });
  // The backup's history ended before the unshipped message: the client was
  // told (history_rewound) and sent its own lost message again.
  await alice.locator("#room-notice", { hasText: "sent again: 1 of your messages" }).waitFor();
  await alice.locator("#messages li.msg:not(.pending)", { hasText: "never shipped" }).waitFor();
  const server = await alice.evaluate(() => window.pchat && document.getElementById("server").textContent);
  assert.match(server, /dc2/, `the client moved to the backup data center (${server})`);
  await shot(alice, "failover-back");

  // Exactly once, in the page and in the backup side's history.
  const bodies = (await shown(alice)).map((m) => m.body);
  assert.equal(bodies.filter((b) => b === "sent during the outage").length, 1, bodies.join(" | "));
  assert.equal(bodies.filter((b) => b === "before the loss").length, 1, bodies.join(" | "));
  assert.equal(bodies.filter((b) => b === "acknowledged, never shipped").length, 1, bodies.join(" | "));
  const seqs = (await shown(alice)).map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "in order");
  assert.equal(new Set(seqs).size, seqs.length, "no seq twice");
  const newBase = await alice.evaluate(() => sessionStorage.getItem("pchat.base"));
  const t = await token(newBase, "alice", "alice-password");
  const room = await alice.evaluate(() => window.pchat.current.id);
  const hist = await apiCall(newBase, t, "GET", `/api/v1/rooms/${room}/messages?limit=500`);
  const stored = hist.messages.map((m) => m.body);
  assert.equal(stored.filter((b) => b === "sent during the outage").length, 1, stored.join(" | "));
  assert.equal(stored.filter((b) => b === "before the loss").length, 1, stored.join(" | "));
  assert.equal(stored.filter((b) => b === "acknowledged, never shipped").length, 1, stored.join(" | "));

  // And chat goes on on the backup side.
  await box(alice).fill("after the failover");
  await box(alice).press("Enter");
  await alice.waitForFunction(() => window.pchat.outbox.length === 0);
});
