// The chat client in a real browser against a real `pchat serve`
// (started by crates/cli/tests/e2e/browser.rs, which passes PCHAT_URL and
// PCHAT_ADMIN=name:password).
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { run, newPage, signIn, shot, roomButton, shown, apiCall, token } from "./lib.mjs";

const base = process.env.PCHAT_URL;
const box = (p) => p.getByRole("textbox", { name: "Message", exact: true });
const [adminName, adminPw] = process.env.PCHAT_ADMIN.split(":");

await run(async (browser, pages) => {
  // The administrator creates a category and two users from the Manage page.
  const admin = await newPage(browser);
  pages.push(admin);
  await signIn(admin, base, adminName, adminPw);
  await admin.getByRole("button", { name: "Manage" }).click();
  const catForm = admin.locator("#adm-category-form");
  await catForm.getByLabel("Name").fill("general");
  await catForm.getByRole("button", { name: "Create category" }).click();
  await admin.locator("#adm-categories li", { hasText: "general" }).waitFor();
  for (const name of ["alice", "bob"]) {
    const f = admin.locator("#adm-user-form");
    await f.getByLabel("Name", { exact: true }).fill(name);
    await f.getByLabel("Password").fill(`${name}-password`);
    await f.getByRole("button", { name: "Create user" }).click();
    await admin.locator("#adm-user-list li", { hasText: name }).waitFor();
  }
  const gf = admin.locator("#adm-group-form");
  await gf.getByLabel("Name").fill("staff");
  await gf.getByLabel("Members (comma separated)").fill("alice, bob");
  await gf.getByRole("button", { name: "Create group" }).click();
  await admin.locator("#adm-group-list li", { hasText: "alice, bob" }).waitFor();
  await shot(admin, "manage");

  // Alice signs in and creates an open room.
  const alice = await newPage(browser);
  pages.push(alice);
  await signIn(alice, base, "alice", "alice-password");
  await alice.getByRole("button", { name: "New room" }).click();
  const dlg = alice.locator("#room-dialog");
  await dlg.getByLabel("Name").fill("lobby");
  await dlg.getByLabel("Description").fill("Where everyone meets");
  await dlg.getByLabel("Privacy").selectOption("open");
  await dlg.getByRole("button", { name: "Save" }).click();
  await alice.locator("#room-name", { hasText: "lobby" }).waitFor();
  await alice.locator("#room-desc", { hasText: "Where everyone meets" }).waitFor();

  // A manager edits her room.
  await alice.getByRole("button", { name: "Edit room" }).click();
  await dlg.getByLabel("Description").fill("Where everyone meets, daily");
  await dlg.getByRole("textbox", { name: "Members (comma separated)" }).fill("group:staff");
  await dlg.getByRole("button", { name: "Save" }).click();
  await alice.locator("#room-desc", { hasText: "daily" }).waitFor();
  await alice.locator("#room-people", { hasText: "Members: group:staff" }).waitFor();

  // Bob, in another browser context, opens the same room.
  const bob = await newPage(browser);
  pages.push(bob);
  await signIn(bob, base, "bob", "bob-password");
  await roomButton(bob, "lobby").click();
  await bob.locator("#room-name", { hasText: "lobby" }).waitFor();
  await bob.waitForFunction(() => window.pchat.wsOpen);
  await alice.waitForFunction(() => window.pchat.wsOpen);

  // They exchange messages live over the WebSocket.
  await alice.getByRole("textbox", { name: "Message", exact: true }).fill("hello bob");
  await alice.getByRole("textbox", { name: "Message", exact: true }).press("Enter");
  await bob.locator("#messages li.msg", { hasText: "hello bob" }).waitFor();
  await bob.getByRole("textbox", { name: "Message", exact: true }).fill("hi alice, alert!");
  await bob.getByLabel("alert", { exact: true }).check();
  await bob.getByRole("button", { name: "Send" }).click();
  await alice.locator("#messages li.msg.alert", { hasText: "hi alice, alert!" }).waitFor();
  // Acknowledged: nothing is left pending on either side.
  await alice.waitForFunction(() => window.pchat.outbox.length === 0);
  await bob.waitForFunction(() => window.pchat.outbox.length === 0);
  assert.deepEqual(
    (await shown(alice)).map((m) => m.body),
    ["hello bob", "hi alice, alert!"],
  );
  assert.deepEqual(await shown(alice), await shown(bob));
  await shot(alice, "chat");

  // A room with a long history: the latest on open, older ones on scroll.
  const aliceToken = await token(base, "alice", "alice-password");
  const rooms = await apiCall(base, aliceToken, "GET", "/api/v1/rooms");
  const general = rooms.rooms[0].category;
  const hist = await apiCall(base, aliceToken, "POST", "/api/v1/rooms", { name: "history", category: general, privacy: "open" });
  for (let i = 1; i <= 130; i++) {
    const body = i === 7 ? "the zebra crossing, seventh" : `history message ${i}`;
    await apiCall(base, aliceToken, "POST", `/api/v1/rooms/${hist.id}/messages`, { body, client_msg_id: `h${i}` });
  }
  await bob.reload();
  await bob.locator("#app").waitFor({ state: "visible" });
  await roomButton(bob, "history").click();
  await bob.locator("#messages li.msg", { hasText: "history message 130" }).waitFor();
  assert.equal((await shown(bob)).length, 50, "the latest 50 on open");
  for (let i = 0; i < 10; i++) {
    await bob.locator("#scroller").evaluate((s) => (s.scrollTop = 0));
    if ((await bob.locator("#history-state").textContent()) === "Beginning of the history.") break;
    await bob.waitForTimeout(200);
  }
  await bob.locator("#history-state", { hasText: "Beginning of the history." }).waitFor();
  const all = await shown(bob);
  assert.deepEqual(
    all.map((m) => m.seq),
    Array.from({ length: 130 }, (_, i) => i + 1),
    "scrolling back shows every message once, in order",
  );

  // Search across rooms, with the hit highlighted.
  await bob.getByRole("searchbox", { name: "Search messages" }).fill("zebra");
  await bob.getByRole("searchbox", { name: "Search messages" }).press("Enter");
  const hit = bob.locator("#result-list li.msg", { hasText: "seventh" });
  await hit.waitFor();
  assert.equal(await hit.locator("mark").textContent(), "zebra");
  assert.equal(await bob.locator("#result-list li.msg").count(), 1);
  await shot(bob, "search");

  // Alice uploads a file in the lobby; Bob downloads it.
  await roomButton(alice, "lobby").click();
  await alice.locator("#room-name", { hasText: "lobby" }).waitFor();
  const content = Buffer.from("quarterly numbers\n".repeat(100));
  await alice.locator("#file").setInputFiles({ name: "report.txt", mimeType: "text/plain", buffer: content });
  await roomButton(bob, "lobby").click();
  const link = bob.locator("#messages a.file", { hasText: "report.txt" });
  await link.waitFor();
  const [download] = await Promise.all([bob.waitForEvent("download"), link.click()]);
  assert.equal(download.suggestedFilename(), "report.txt");
  assert.deepEqual(await readFile(await download.path()), content);

  // A Secret room is invisible to a non-member, even by its address.
  await alice.getByRole("button", { name: "New room" }).click();
  await dlg.getByLabel("Name").fill("hideout");
  await dlg.getByLabel("Privacy").selectOption("secret");
  await dlg.getByRole("button", { name: "Save" }).click();
  await alice.locator("#room-name", { hasText: "hideout" }).waitFor();
  assert.equal(await roomButton(alice, "hideout").count(), 1);
  const secretId = await alice.evaluate(() => window.pchat.current.id);
  await bob.goto(`${base}/#room-${secretId}`);
  await bob.locator("#app").waitFor({ state: "visible" });
  await roomButton(bob, "lobby").waitFor();
  assert.equal(await roomButton(bob, "hideout").count(), 0, "bob sees no secret room");
  await bob.locator("#welcome-note", { hasText: "No such room" }).waitFor();
  assert.equal(await bob.locator("#room").isVisible(), false, "bob cannot open it by address");
  assert.equal(await bob.locator("body").textContent().then((t) => t.includes("hideout")), false);

  // Unread counts: bob is in the lobby's list with a badge when alice posts
  // while he looks at another room.
  await roomButton(bob, "history").click();
  await bob.locator("#room-name", { hasText: "history" }).waitFor();
  await roomButton(alice, "lobby").click();
  await alice.locator("#room-name", { hasText: "lobby" }).waitFor();
  await alice.getByRole("textbox", { name: "Message", exact: true }).fill("are you there?");
  await alice.getByRole("textbox", { name: "Message", exact: true }).press("Enter");
  await roomButton(bob, "lobby").locator(".badge", { hasText: "1" }).waitFor();
  assert.equal(await roomButton(bob, "history").locator(".badge").count(), 0);
  await shot(bob, "unread");

  // Search within one room only.
  await roomButton(bob, "lobby").click();
  await bob.locator("#room-name", { hasText: "lobby" }).waitFor();
  await bob.getByLabel("this room").check();
  await bob.getByRole("searchbox", { name: "Search messages" }).fill("history");
  await bob.getByRole("searchbox", { name: "Search messages" }).press("Enter");
  await bob.locator("#result-list li", { hasText: "No messages match." }).waitFor();
  await bob.getByLabel("this room").uncheck();
  await bob.getByRole("button", { name: "Close" }).click();

  // Invitations: alice invites bob to a closed room; he finds it and joins.
  await alice.getByRole("button", { name: "New room" }).click();
  await dlg.getByLabel("Name").fill("planning");
  await dlg.getByLabel("Privacy").selectOption("closed");
  await dlg.getByRole("button", { name: "Save" }).click();
  await alice.locator("#room-name", { hasText: "planning" }).waitFor();
  await alice.getByRole("button", { name: "Edit room" }).click();
  await dlg.getByLabel("Invite user").fill("bob");
  await dlg.getByRole("button", { name: "Save" }).click();
  await alice.locator("#room-dialog").waitFor({ state: "hidden" });
  await bob.reload();
  await bob.locator("#invitation-list li", { hasText: "planning (from alice)" }).click();
  await bob.locator("#room-name", { hasText: "planning" }).waitFor();
  await bob.locator("#room-people", { hasText: "bob" }).waitFor();
  await box(bob).fill("thanks for the invitation");
  await box(bob).press("Enter");
  await alice.locator("#messages li.msg", { hasText: "thanks for the invitation" }).waitFor();
  // And leaves again: a closed room he is not in shows nothing to read.
  await bob.getByRole("button", { name: "Leave" }).click();
  await bob.locator("#history-state", { hasText: "You cannot read this room." }).waitFor();

  // Topic feeds: bob follows "zebra"; alice's next zebra arrives live.
  await bob.getByRole("button", { name: "New topic feed" }).click();
  const fdlg = bob.locator("#feed-dialog");
  await fdlg.getByLabel("Name").fill("zebras");
  await fdlg.getByLabel("Words (space separated)").fill("zebra");
  await fdlg.getByRole("button", { name: "Save" }).click();
  await bob.locator("#feed-list button", { hasText: "zebras" }).click();
  await bob.locator("#result-list li.msg", { hasText: "seventh" }).waitFor();
  await roomButton(alice, "lobby").click();
  await alice.locator("#room-name", { hasText: "lobby" }).waitFor();
  await box(alice).fill("a zebra in the lobby");
  await box(alice).press("Enter");
  await bob.locator("#result-list li.msg", { hasText: "a zebra in the lobby" }).waitFor();
  assert.equal(await bob.locator("#result-list li.msg mark").first().textContent(), "zebra");

  // Readable at phone width: the sidebar is a drawer behind the menu button.
  const phone = await newPage(browser, { viewport: { width: 390, height: 780 } });
  pages.push(phone);
  await signIn(phone, base, "bob", "bob-password");
  assert.equal(await phone.locator("#sidebar").evaluate((n) => n.getBoundingClientRect().right <= 0), true);
  await phone.getByRole("button", { name: "Show rooms" }).click();
  await roomButton(phone, "lobby").click();
  await phone.locator("#messages li.msg", { hasText: "hello bob" }).waitFor();
  await phone.waitForTimeout(300); // the drawer's slide
  await shot(phone, "phone");
});
