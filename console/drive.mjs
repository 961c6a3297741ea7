// Drives the console in headless Debian Chromium with playwright-core, as a person would, at each
// width, in one of four parts (so that the tests can run them side by side):
//   core      sign in (after a wrong token and a wrong secret, from a link to a user page), switch
//             organisation and page through its users by keyboard, create a machine user (its
//             description over the limit first), create a secret and read it from the dialog (Escape
//             asks first), rotate, delete, the refused user, sign out, a session that ends with a
//             dialog open, and dark mode;
//   limits    what a caller may not do: a user without roles, a user manager, the secret signed in
//             with, and the live-secret limit against the organisation's policy (edited here);
//   sections  personal access tokens, roles, history, deactivate/reactivate/remove;
//   credentials  trusted issuers, keys (a key file downloaded once, a public key uploaded),
//             federated credentials, and a project with a role, an API application and a grant.
//   node drive.mjs '{"part": ..., "console": URL, "adminToken": ..., "refused": {...}, "manager": {...},
//                    "markupName": ..., "otherOrg": NAME, "screenshots": DIR, "widths": [1280, 390]}'
// Prints one JSON object per width: what the page showed, the secrets it gave, and every problem
// seen (a console error, a control without a name, a page wider than the screen, an axe-core
// violation, a secret that outlived its dialog). tests/test_console.py judges it.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const origin = new URL(config.console).origin;
// axe-core, evaluated in the page by the driver (not a <script>: the console's policy allows only
// its own files).
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-quic", "--disable-sync"],
});

// Every control a person can reach has a name, and the page is no wider than the screen.
async function checkPage(page) {
  return page.evaluate(() => {
    const found = [];
    for (const control of document.querySelectorAll("input, select, textarea, button, a[href]")) {
      if (control.closest("[hidden]") || control.type === "hidden") continue;
      const named = control.labels?.length > 0 || control.getAttribute("aria-label") || control.textContent.trim();
      if (!named) found.push(`a ${control.tagName.toLowerCase()} without a name`);
    }
    if (document.documentElement.scrollWidth > window.innerWidth) {
      found.push(`the page is ${document.documentElement.scrollWidth} px wide in a ${window.innerWidth} px window`);
    }
    return found;
  });
}

// axe-core's default rule set on the page as it is (an open dialog included).
async function axe(page) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(AXE);
  const { violations } = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return violations.map((v) => `axe ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
}

// Whether the page's memory (after a garbage collection), its document, its storage or its address
// still hold `text`.
async function holds(page, cdp, text) {
  const where = await page.evaluate((t) => ({
    document: document.documentElement.outerHTML.includes(t)
      || [...document.querySelectorAll("input, textarea")].some((f) => f.value.includes(t)),
    storage: JSON.stringify({ ...sessionStorage }).includes(t) || JSON.stringify({ ...localStorage }).includes(t),
    address: location.href.includes(t),
  }), text);
  await cdp.send("HeapProfiler.collectGarbage");
  const chunks = [];
  const take = (event) => chunks.push(event.chunk);
  cdp.on("HeapProfiler.addHeapSnapshotChunk", take);
  await cdp.send("HeapProfiler.takeHeapSnapshot", { reportProgress: false, captureNumericValue: false });
  cdp.off("HeapProfiler.addHeapSnapshotChunk", take);
  return { ...where, memory: chunks.join("").includes(text) };
}

// What has focus, in words: its role or tag, and its text or label.
const focused = (page) => page.evaluate(() => {
  const element = document.activeElement;
  if (!element || element === document.body) return "body";
  const label = element.labels?.[0]?.textContent ?? element.getAttribute("aria-label") ?? element.textContent.trim().slice(0, 60);
  return `${element.tagName.toLowerCase()}${element.classList.length ? `.${[...element.classList].join(".")}` : ""}: ${label}`;
});

// A session at one width: the page, its checks and its record.
async function open(width) {
  const context = await browser.newContext({
    viewport: { width, height: width > 600 ? 860 : 844 },
    permissions: ["clipboard-read", "clipboard-write"],
  });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("HeapProfiler.enable");
  const result = { width, steps: [], problems: [], requests: [], secrets: {} };
  // Chromium logs every refused request as an error; where a refusal is the point of the step, the
  // step says how many it expects.
  const expected = { refusals: 0 };
  page.on("console", (message) => {
    const refused = message.text().startsWith("Failed to load resource: the server responded with a status of 401");
    if (refused && expected.refusals > 0) expected.refusals--;
    else if (message.type() === "error" || message.type() === "warning") result.problems.push(`console ${message.type()}: ${message.text()}`);
  });
  page.on("pageerror", (error) => result.problems.push(`page error: ${error}`));
  page.on("request", (request) => result.requests.push(request.url()));
  const step = async (name) => {
    for (const problem of await checkPage(page)) result.problems.push(`${name}: ${problem}`);
    for (const problem of await axe(page)) result.problems.push(`${name}: ${problem}`);
    await page.screenshot({ path: `${config.screenshots}/${width}-${name}.png`, fullPage: true });
    result.steps.push(name);
  };
  const heading = (text) => page.getByRole("heading", { level: 1, name: text });
  const dialog = () => page.getByRole("dialog");
  // Gone from the page, not only hidden: a closed <dialog> stays in the DOM until its "close"
  // event (a task later) removes it, and role locators stop seeing it as soon as it is hidden.
  const dialogGone = () => page.waitForFunction(() => document.querySelector("dialog") === null);
  const signInWithPat = async (token) => {
    await page.getByLabel("A personal access token", { exact: true }).check();
    await page.getByLabel("Personal access token", { exact: true }).fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
  };
  const signInWithSecret = async (clientId, clientSecret) => {
    await page.getByLabel("A machine user's client id and secret", { exact: true }).check();
    await page.getByLabel("Client id", { exact: true }).fill(clientId);
    await page.getByLabel("Client secret", { exact: true }).fill(clientSecret);
    await page.getByRole("button", { name: "Sign in" }).click();
  };
  const signOut = async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await heading("Sign in to the console").waitFor();
  };
  // Presses Tab until `matches` has focus; gives the number of presses (or -1 after `most`).
  const tabTo = async (text, most = 60) => {
    for (let n = 1; n <= most; n++) {
      await page.keyboard.press("Tab");
      if ((await focused(page)).endsWith(text)) return n;
    }
    return -1;
  };
  const rows = () => page.locator("tbody tr").evaluateAll((all) =>
    all.map((row) => Object.fromEntries([...row.cells].map((c) => [c.dataset.label, c.textContent.trim()]))));
  return { expected, context, page, cdp, result, step, heading, dialog, dialogGone, signInWithPat, signInWithSecret, signOut, tabTo, rows };
}

// The one-time dialog: what it shows, the copy button, and its fields.
async function readOnce(s, name, labels) {
  const once = s.dialog();
  await once.getByRole("heading", { name: /^Copy the new/ }).waitFor();
  const shown = { warning: await once.locator(".warning").first().textContent() };
  for (const [key, label] of Object.entries(labels)) shown[key] = await once.getByLabel(label, { exact: true }).inputValue();
  await s.step(name);
  return shown;
}

async function core(width) {
  const s = await open(width);
  const { page, cdp, result, step, heading, dialog, dialogGone } = s;

  // 1. A link to a user page while signed out: the sign-in page, which keeps the address.
  await page.goto(`${config.console}#/users/${config.refused.userId}`);
  await heading("Sign in to the console").waitFor();
  await step("1-sign-in");
  // A wrong token and a wrong secret: the same error box, with focus on it.
  await s.signInWithPat("not-a-token");
  await page.locator(".problem").waitFor();
  result.wrongPat = { focus: await focused(page), kind: await page.locator(".problem").getAttribute("role") };
  s.expected.refusals = 1;
  await s.signInWithSecret(config.refused.clientId, "msk_wrong");
  await page.locator(".problem").getByText("client id or secret is wrong").waitFor();
  result.wrongSecret = { focus: await focused(page), kind: await page.locator(".problem").getAttribute("role") };
  await step("1-sign-in-refused");
  // The admin's token, by keyboard: back on the page the link asked for.
  await page.getByLabel("A personal access token", { exact: true }).check();
  await page.getByLabel("Personal access token", { exact: true }).fill(config.adminToken);
  await page.keyboard.press("Tab");
  result.focusOutline = await page.evaluate(() => {
    const style = getComputedStyle(document.activeElement);
    return { element: document.activeElement.tagName, style: style.outlineStyle, width: style.outlineWidth };
  });
  await page.keyboard.press("Shift+Tab");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { level: 1, name: /^reader-nobody/ }).waitFor();
  result.returnedTo = new URL(page.url()).hash;
  result.storage = await page.evaluate(() => ({ session: Object.keys(sessionStorage).sort(), local: localStorage.length }));
  result.who = { text: await page.locator(".who").textContent(), visible: await page.locator(".who").isVisible() };
  await step("1-returned");

  // The list; a name that is markup is shown as text.
  await page.getByRole("link", { name: "Machine users", exact: true }).click();
  await heading("Machine users").waitFor();
  await page.locator("tbody").waitFor();
  result.markupShownAsText = await page.getByText(config.markupName, { exact: true }).count();
  result.images = await page.locator("main img").count();
  await step("1-users");

  // Another organisation, by keyboard: an arrow key only moves the choice; Switch switches.
  const picker = page.getByLabel("Organisation", { exact: true });
  await picker.focus();
  await page.keyboard.press("ArrowDown");
  await page.waitForTimeout(300);
  result.arrowKept = {
    users: await page.getByRole("link", { name: "admin", exact: true }).count(),
    focus: await focused(page),
  };
  await picker.selectOption({ label: config.otherOrg });
  await page.getByRole("button", { name: "Switch" }).focus();
  await page.keyboard.press("Enter");
  await page.getByRole("link", { name: "fleet-00" }).waitFor();
  // Paging by keyboard: a few Tabs from the heading to Next, and focus stays on the pager.
  await heading("Machine users").focus();
  result.tabsToNext = await s.tabTo("Next");
  const pageShown = async () => [
    await page.locator(".pager .page").textContent(),
    await page.locator("tbody tr").count(),
    await page.getByRole("button", { name: "Next" }).isEnabled(),
  ];
  result.otherOrgPages = [await pageShown()];
  await step("1-other-org");
  await page.keyboard.press("Enter");
  await page.getByRole("link", { name: width > 600 ? "fleet-20" : "fleet-10" }).waitFor();
  result.otherOrgPages.push(await pageShown());
  result.focusAfterNext = await focused(page);
  await step("1-page-2");
  await page.getByRole("button", { name: "Previous" }).focus();
  await page.keyboard.press("Enter");
  await page.getByRole("link", { name: "fleet-00" }).waitFor();
  result.otherOrgPages.push(await pageShown());
  result.focusAfterPrevious = await focused(page);
  await page.getByLabel("Per page", { exact: true }).selectOption("50");
  await page.getByRole("link", { name: "fleet-24" }).waitFor();
  result.otherOrgPages.push(await pageShown());
  result.focusAfterSize = await focused(page);
  await picker.selectOption({ label: "default" });
  await page.getByRole("button", { name: "Switch" }).click();
  await page.getByRole("link", { name: "admin", exact: true }).waitFor();

  // 2. Create a machine user: the organisation is named, and an overlong description is refused
  // with its count, not cut.
  const userName = `console-${width}-${Date.now().toString(36)}`;
  await page.getByRole("button", { name: "New machine user" }).click();
  result.newUserOrg = await dialog().locator(".in-org").textContent();
  await dialog().getByLabel("User name", { exact: true }).fill(userName);
  await dialog().getByLabel("Name", { exact: true }).fill(`Billing exporter (${width} px)`);
  const description = dialog().getByLabel("Description (optional)", { exact: true });
  await description.fill("x".repeat(1048));
  result.overLimit = { count: await dialog().locator(".count.over").textContent() };
  await dialog().getByRole("button", { name: "Create" }).click();
  await dialog().getByRole("alert").waitFor();
  result.overLimit.refusal = await dialog().getByRole("alert").textContent();
  result.overLimit.focus = await focused(page);
  await step("2-new-user-too-long");
  await description.fill("Sends invoices to the ledger every night");
  result.withinLimit = await dialog().locator(".count").last().textContent();
  await step("2-new-user");
  await dialog().getByRole("button", { name: "Create" }).click();
  await heading(userName).waitFor();
  result.userName = userName;
  // The toast covers no button.
  result.toastOverlaps = await page.evaluate(() => {
    const toast = document.getElementById("status").getBoundingClientRect();
    if (!document.getElementById("status").textContent) return "no toast";
    return [...document.querySelectorAll("main button")].some((b) => {
      const r = b.getBoundingClientRect();
      return r.left < toast.right && toast.left < r.right && r.top < toast.bottom && toast.top < r.bottom;
    });
  });
  await page.getByRole("link", { name: "← Machine users" }).click();
  await heading("Machine users").waitFor();
  // A part from the middle of the name, in other letter case: the search holds it anywhere.
  await page.getByLabel("Search by user name or name", { exact: true }).fill(userName.slice(8).toUpperCase());
  await page.keyboard.press("Enter");
  await page.getByRole("link", { name: userName }).waitFor();
  result.found = await page.locator("tbody tr").count();
  await step("2-search");
  await page.getByRole("link", { name: userName }).click();
  await heading(userName).waitFor();
  await page.getByText("No secrets.").waitFor();
  result.countBefore = await page.locator(".count-of").textContent();
  await step("2-user");

  // 3. Create a secret and read it from the dialog, the copy button and the lines included.
  await page.getByRole("button", { name: "New secret" }).click();
  result.newSecretOrg = await dialog().locator(".in-org").textContent();
  await dialog().getByLabel("Description (optional)", { exact: true }).fill("first: the nightly job");
  await dialog().getByLabel("Expires", { exact: true }).selectOption({ label: "In 90 days" });
  await step("3-new-secret");
  await dialog().getByRole("button", { name: "Create secret" }).click();
  const labels = {
    clientId: "Client id",
    clientSecret: "Client secret",
    curl: "Get an access token with curl",
    environment: "As environment variables",
  };
  const first = await readOnce(s, "3-secret-dialog", labels);
  // "Copied" leaves the secret's box as it was.
  const box = () => dialog().getByLabel("Client secret", { exact: true }).boundingBox();
  const before = await box();
  await dialog().getByRole("button", { name: "Copy client secret" }).click();
  first.copied = (await page.evaluate(() => navigator.clipboard.readText())) === first.clientSecret;
  first.copiedLabel = await dialog().locator("button.copy").nth(1).textContent();
  first.boxKept = JSON.stringify(before) === JSON.stringify(await box());
  await page.evaluate(() => navigator.clipboard.writeText(""));
  // The check can see a secret: in the open dialog, and in the page's memory while a script holds
  // it (the dialog's fields keep their text in the browser's DOM, outside the script's memory).
  await page.evaluate((text) => { globalThis.probe = [...text].join(""); }, first.clientSecret);
  first.whileOpen = await holds(page, cdp, first.clientSecret);
  await page.evaluate(() => { delete globalThis.probe; });
  // The test exchanges it at the token endpoint, as the client would.
  const exchanged = await fetch(`${origin}/oauth/v2/token`, {
    method: "POST",
    body: new URLSearchParams({ grant_type: "client_credentials", client_id: first.clientId, client_secret: first.clientSecret }),
  });
  first.exchange = { status: exchanged.status, tokenType: (await exchanged.json()).token_type };
  // Escape asks before the secret goes; "Back to it" returns; Done asks too; "Close it" closes.
  await page.keyboard.press("Escape");
  await dialog().getByText("Close it for good?").waitFor();
  first.escape = { open: await dialog().isVisible(), focus: await focused(page) };
  await step("3-close-asked");
  await page.keyboard.press("Enter"); // "Back to it", which has focus
  first.back = { asking: await dialog().getByText("Close it for good?").isVisible(), focus: await focused(page) };
  await dialog().getByRole("button", { name: "Done: I have stored it" }).click();
  await dialog().getByRole("button", { name: "Close it" }).click();
  await dialogGone();
  first.afterClose = await holds(page, cdp, first.clientSecret);
  await page.getByRole("cell", { name: "first: the nightly job" }).waitFor();
  result.countAfter = await page.locator(".count-of").textContent();
  result.timeText = await page.locator("tbody time").first().textContent();
  await step("3-secrets");
  result.secrets.first = first;

  // 4. Rotate with a day's grace: the new secret is marked, the old one is retiring in a day.
  await page.getByRole("button", { name: "Rotate" }).click();
  await dialog().getByLabel("Grace period for the other secrets", { exact: true }).selectOption({ label: "1 day" });
  await dialog().getByLabel("Description (optional)", { exact: true }).fill("second: after rotation");
  await step("4-rotate");
  await dialog().getByRole("button", { name: "Rotate" }).click();
  const second = await readOnce(s, "4-secret-dialog", labels);
  await page.keyboard.press("Escape");
  await dialog().getByRole("button", { name: "Close it" }).click();
  await dialogGone();
  second.afterClose = await holds(page, cdp, second.clientSecret);
  await page.getByRole("cell", { name: "second: after rotation" }).waitFor();
  result.secrets.second = second;
  result.afterRotation = await s.rows();
  result.timeTitle = await page.locator("tbody time").first().getAttribute("title");
  await step("4-rotated");

  // 5. Delete the old one, after a confirmation.
  await page.getByRole("row").filter({ hasText: "first: the nightly job" }).getByRole("button", { name: /^Delete secret/ }).click();
  await dialog().getByRole("heading", { name: "Delete this secret?" }).waitFor();
  result.confirmFocus = await page.evaluate(() => document.activeElement.textContent);
  await step("5-confirm");
  await dialog().getByRole("button", { name: "Delete secret" }).click();
  await dialogGone();
  await page.getByRole("cell", { name: "first: the nightly job" }).waitFor({ state: "detached" });
  await page.getByRole("cell", { name: "second: after rotation" }).waitFor();
  result.afterDelete = await page.locator("tbody tr").count();
  await step("5-deleted");

  // 6. A session that ends with a dialog open: every dialog goes, the sign-in has focus, and
  // signing in again returns to this page.
  const userPage = new URL(page.url()).hash;
  await page.getByRole("button", { name: "New secret" }).click();
  await dialog().getByLabel("Description (optional)", { exact: true }).fill("never sent");
  await page.evaluate(() => sessionStorage.setItem("machine-secrets.token", "revoked-meanwhile"));
  await dialog().getByRole("button", { name: "Create secret" }).click();
  await heading("Sign in to the console").waitFor();
  result.endedWithDialog = {
    dialogs: await page.locator("dialog").count(),
    focus: await focused(page),
    words: await page.getByRole("alert").textContent(),
  };
  await step("6-session-ended");
  await s.signInWithPat(config.adminToken);
  await heading(userName).waitFor();
  result.endedReturnedTo = new URL(page.url()).hash === userPage;

  // 7. Sign out: the token is forgotten.
  await s.signOut();
  result.signedOut = {
    notice: await page.locator(".notice").textContent(),
    session: await page.evaluate(() => sessionStorage.length),
    local: await page.evaluate(() => localStorage.length),
  };
  await step("7-signed-out");

  // 8. A token that stops working returns to sign-in; and the console in dark mode.
  await page.evaluate(() => sessionStorage.setItem("machine-secrets.token", "not-a-token"));
  await page.reload();
  await heading("Sign in to the console").waitFor();
  result.ended = await page.getByRole("alert").textContent();
  await step("8-session-ended");
  await page.emulateMedia({ colorScheme: "dark" });
  await s.signInWithPat(config.adminToken);
  await heading("Machine users").waitFor();
  await page.locator("tbody").waitFor();
  result.darkGround = await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
  await step("8-dark");
  await s.context.close();
  return result;
}

async function limits(width) {
  const s = await open(width);
  const { page, result, step, heading, dialog } = s;
  const manager = config.managers[width];
  await page.goto(config.console);
  await heading("Sign in to the console").waitFor();

  // 1. A user without roles: the list is refused with what is missing, and "New machine user"
  // says why it does nothing.
  // What it may not do is known before any call is refused: GetMe said it. The list's answer is
  // held back until the button has been read.
  let release;
  const held = new Promise((resolve) => (release = resolve));
  const list = "**/machinesecrets.v1.UserService/ListUsers";
  await page.route(list, async (route) => {
    await held;
    await route.continue();
  });
  await s.signInWithSecret(config.refused.clientId, config.refused.clientSecret);
  await heading("Machine users").waitFor();
  const createBefore = page.getByRole("button", { name: "New machine user" });
  result.beforeRefusal = {
    disabled: await createBefore.getAttribute("aria-disabled"),
    alerts: await page.getByRole("alert").count(),
  };
  release();
  await page.getByRole("alert").waitFor();
  await page.unroute(list);
  result.refusal = await page.getByRole("alert").textContent();
  result.who = { text: await page.locator(".who").textContent(), visible: await page.locator(".who").isVisible() };
  const create = page.getByRole("button", { name: "New machine user" });
  result.noRoles = {
    disabled: await create.getAttribute("aria-disabled"),
    why: await page.locator(".why").first().textContent(),
    title: await create.getAttribute("title"),
  };
  // It does nothing, by mouse or keyboard, and stays reachable to say why.
  await create.click({ force: true });
  await create.focus();
  await page.keyboard.press("Enter");
  result.noRoles.focus = await focused(page);
  result.noRoles.dialogs = await page.locator("dialog").count();
  await step("1-no-roles");
  await s.signOut();

  // 2. A user manager: may manage users, not the policy or members; deleting the secret it signed
  // in with is warned of, and ends the session.
  await s.signInWithSecret(manager.clientId, manager.clientSecret);
  await heading("Machine users").waitFor();
  result.managerCreate = await page.getByRole("button", { name: "New machine user" }).getAttribute("aria-disabled");
  await page.getByRole("link", { name: "Secret policy" }).click();
  await heading("Secret policy").waitFor();
  result.managerPolicy = {
    disabled: await page.getByRole("button", { name: "Save policy" }).getAttribute("aria-disabled"),
    why: await page.locator(".why").textContent(),
  };
  await step("2-manager-policy");
  await page.goto(`${config.console}#/users/${manager.userId}/roles`);
  await page.getByRole("heading", { name: "Roles in this organisation" }).waitFor();
  await page.locator(".roles-held").waitFor();
  result.managerRoles = {
    held: await page.locator(".roles-held").textContent(),
    remove: await page.getByRole("button", { name: "Remove from organisation" }).getAttribute("aria-disabled"),
    why: await page.locator(".why").textContent(),
  };
  // The admin holds more power than a user manager: what would act on it says so before any
  // call, and does nothing.
  await page.goto(`${config.console}#/users/${config.adminUserId}`);
  await page.getByRole("heading", { level: 1, name: /^admin/ }).waitFor();
  const deactivate = page.getByRole("button", { name: "Deactivate" });
  await page.locator(".user-actions + .why").waitFor();
  result.morePower = {
    disabled: await deactivate.getAttribute("aria-disabled"),
    why: await page.locator(".user-actions + .why").textContent(),
    title: await deactivate.getAttribute("title"),
    newSecret: await page.getByRole("button", { name: "New secret" }).getAttribute("aria-disabled"),
  };
  await deactivate.focus();
  await page.keyboard.press("Enter");
  result.morePower.dialogs = await page.locator("dialog").count();
  await step("2-more-power");
  await page.goto(`${config.console}#/users/${manager.userId}`);
  await page.getByRole("cell", { name: "manager's own" }).waitFor();
  await page.getByRole("row").filter({ hasText: "manager's own" }).getByRole("button", { name: /^Delete secret/ }).click();
  await dialog().getByRole("heading", { name: "Delete this secret?" }).waitFor();
  result.ownSecret = await dialog().locator("#signed-in-with").textContent();
  await step("2-own-secret");
  await dialog().getByRole("button", { name: "Delete secret" }).click();
  await heading("Sign in to the console").waitFor();
  result.afterOwnSecret = { dialogs: await page.locator("dialog").count(), words: await page.getByRole("alert").textContent() };

  // 3. The policy, edited by the admin in the other organisation; there, a user at the limit.
  await s.signInWithPat(config.adminToken);
  await page.getByRole("heading", { level: 1 }).waitFor();
  await page.getByLabel("Organisation", { exact: true }).selectOption({ label: config.otherOrg });
  await page.getByRole("button", { name: "Switch" }).click();
  await page.getByRole("link", { name: "fleet-00" }).waitFor();
  await page.getByRole("link", { name: "Secret policy" }).click();
  await heading("Secret policy").waitFor();
  await page.getByLabel("Most live secrets a user may have", { exact: true }).fill("2");
  await step("3-policy");
  await page.getByRole("button", { name: "Save policy" }).click();
  await page.locator("#status").getByText("Secret policy saved.").waitFor();
  await page.reload();
  await heading("Secret policy").waitFor();
  result.policySaved = await page.getByLabel("Most live secrets a user may have", { exact: true }).inputValue();
  await page.goto(`${config.console}#/users/${config.limited.userId}`);
  await page.getByText(/live secrets$/).waitFor();
  const newSecret = page.getByRole("button", { name: "New secret" });
  result.atLimit = {
    count: await page.locator(".count-of").textContent(),
    disabled: await newSecret.getAttribute("aria-disabled"),
    why: await page.locator(".why").textContent(),
  };
  result.atLimitStates = await s.rows();
  await step("3-at-limit");
  await s.context.close();
  return result;
}

async function sections(width) {
  const s = await open(width);
  const { page, cdp, result, step, heading, dialog, dialogGone } = s;
  const subject = config.subjects[width];
  await page.goto(`${config.console}#/users/${subject.userId}/tokens`);
  await heading("Sign in to the console").waitFor();
  await s.signInWithPat(config.adminToken);
  await page.getByRole("heading", { name: "Personal access tokens", level: 2 }).waitFor();
  await page.getByText("No personal access tokens.").waitFor();

  // 1. Personal access tokens: create (shown once), list, revoke.
  await page.getByRole("button", { name: "New token" }).click();
  result.tokenOrg = await dialog().locator(".in-org").textContent();
  await dialog().getByLabel("Expires", { exact: true }).selectOption({ label: "In 30 days" });
  await step("1-new-token");
  await dialog().getByRole("button", { name: "Create token" }).click();
  const token = await readOnce(s, "1-token-dialog", { token: "Personal access token" });
  token.works = (await fetch(`${origin}/machinesecrets.v1.OrgService/ListOrganizations`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token.token}` },
    body: "{}",
  })).status;
  await page.keyboard.press("Escape");
  await dialog().getByRole("button", { name: "Close it" }).click();
  await dialogGone();
  token.afterClose = await holds(page, cdp, token.token);
  await page.locator("tbody tr").first().waitFor();
  token.listed = await s.rows();
  await step("1-tokens");
  await page.getByRole("button", { name: /^Revoke token/ }).click();
  await dialog().getByRole("heading", { name: "Revoke this token?" }).waitFor();
  await step("1-revoke");
  await dialog().getByRole("button", { name: "Revoke token" }).click();
  await dialogGone();
  await page.getByText("No personal access tokens.").waitFor();
  token.afterRevoke = (await fetch(`${origin}/machinesecrets.v1.OrgService/ListOrganizations`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token.token}` },
    body: "{}",
  })).status;
  result.token = token;

  // 2. Roles: grant one by keyboard, then end the membership.
  await page.getByRole("link", { name: "Roles" }).click();
  await page.getByRole("heading", { name: "Roles in this organisation" }).waitFor();
  await page.locator(".held").waitFor();
  result.heldBefore = await page.locator(".held").textContent();
  await page.getByLabel("ORG_USER_MANAGER", { exact: true }).focus();
  await page.keyboard.press("Space");
  await step("2-roles");
  await page.getByRole("button", { name: "Grant roles" }).focus();
  await page.keyboard.press("Enter");
  await page.locator("#status").getByText(/ORG_USER_MANAGER granted/).waitFor();
  result.granted = await page.locator("#status").textContent();
  result.heldAfterGrant = await page.locator(".roles-held").textContent();
  result.focusAfterGrant = await focused(page);
  await page.getByRole("button", { name: "Remove from organisation" }).click();
  await dialog().getByRole("button", { name: "Remove membership" }).waitFor();
  result.removeMember = await dialog().locator("p").first().textContent();
  await step("2-remove-member");
  await dialog().getByRole("button", { name: "Remove membership" }).click();
  await dialogGone();
  await page.getByText(/holds no roles in/).waitFor();
  result.heldAfterRemove = await page.locator(".held").textContent();
  result.focusAfterRemove = await focused(page);

  // 3. Deactivate and reactivate, each after saying what stops working.
  await page.getByRole("button", { name: "Deactivate" }).click();
  await dialog().getByRole("button", { name: "Deactivate" }).waitFor();
  result.deactivateSays = await dialog().locator("p").nth(1).textContent();
  await step("3-deactivate");
  await dialog().getByRole("button", { name: "Deactivate" }).click();
  await dialogGone();
  await page.getByRole("heading", { level: 1, name: /Deactivated/ }).waitFor();
  await page.getByRole("button", { name: "Reactivate" }).click();
  await dialog().getByRole("button", { name: "Reactivate" }).click();
  await dialogGone();
  await page.getByRole("heading", { level: 1, name: /Active/ }).waitFor();

  // 4. History: newest first, with who, when and from where.
  await page.getByRole("link", { name: "History" }).click();
  await page.getByRole("heading", { name: "History", level: 2 }).waitFor();
  await page.locator("tbody tr").first().waitFor();
  result.history = await s.rows();
  await page.locator("#status:empty").waitFor({ state: "attached" }); // the toast, gone
  await step("4-history");

  // 5. Remove the user: it is gone from the list.
  await page.getByRole("button", { name: "Remove user" }).click();
  await dialog().getByRole("button", { name: "Remove user" }).waitFor();
  result.removeSays = await dialog().locator("p").nth(1).textContent();
  await step("5-remove");
  await dialog().getByRole("button", { name: "Remove user" }).click();
  await heading("Machine users").waitFor();
  await page.locator("tbody").waitFor();
  result.removedListed = await page.getByRole("link", { name: subject.userName, exact: true }).count();
  await s.context.close();
  return result;
}

async function credentials(width) {
  const s = await open(width);
  const { page, cdp, result, step, heading, dialog, dialogGone } = s;
  const holder = config.keyholders[width];
  const issuer = `https://k8s-${width}.example.test`;
  await page.goto(`${config.console}#/issuers`);
  await heading("Sign in to the console").waitFor();
  await s.signInWithPat(config.adminToken);
  await heading("Trusted issuers").waitFor();
  await page.getByText("No trusted issuers.").waitFor();

  // 1. Trust an issuer whose keys are given inline (nothing is fetched).
  await page.getByRole("button", { name: "Trust an issuer" }).click();
  result.issuerOrg = await dialog().locator(".in-org").textContent();
  await dialog().getByLabel("Issuer", { exact: true }).fill(issuer);
  await dialog().getByLabel("Given here (a JWKS document)", { exact: true }).check();
  await dialog().getByLabel("JWKS document", { exact: true }).fill(config.jwks);
  await dialog().getByLabel("Description (optional)", { exact: true }).fill(`The ${width} px cluster`);
  await step("1-trust-issuer");
  await dialog().getByRole("button", { name: "Trust issuer" }).click();
  await dialogGone();
  await page.getByText(issuer, { exact: true }).waitFor();
  result.issuers = await s.rows();
  await step("1-issuers");

  // 2. Keys: a key pair made by the service (its key file shown once, with a download), and a
  // public key of one's own; then one removed.
  await page.goto(`${config.console}#/users/${holder.userId}/keys`);
  await page.getByRole("heading", { name: "Keys", level: 2 }).waitFor();
  await page.getByText("No keys.").waitFor();
  await page.locator("#status:empty").waitFor({ state: "attached" }); // the issuer's toast, gone
  await page.getByRole("button", { name: "Add key" }).click();
  result.keyOrg = await dialog().locator(".in-org").textContent();
  await step("2-add-key");
  await dialog().getByRole("button", { name: "Add key" }).click();
  const key = await readOnce(s, "2-key-dialog", { file: "Key file" });
  const downloading = page.waitForEvent("download");
  await dialog().getByRole("link", { name: "Download the key file" }).click();
  const download = await downloading;
  key.downloadName = download.suggestedFilename();
  key.downloaded = readFileSync(await download.path(), "utf8") === key.file;
  const parsed = JSON.parse(key.file);
  key.fields = { type: parsed.type, userId: parsed.userId, keyId: parsed.keyId, pem: String(parsed.key).startsWith("-----BEGIN") };
  // Out by keyboard: Escape asks, Tab to "Close it", Enter; focus returns to the tab's heading.
  await page.keyboard.press("Escape");
  await dialog().getByText("Close it for good?").waitFor();
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await dialogGone();
  key.focusAfterClose = await focused(page);
  key.afterClose = await holds(page, cdp, parsed.key.split("\n")[1]);
  await page.locator("tbody tr").first().waitFor();
  await page.getByRole("button", { name: "Add key" }).click();
  await dialog().getByLabel("Upload a public key of my own", { exact: true }).check();
  await dialog().getByLabel("Public key (PEM)", { exact: true }).fill(config.publicKey);
  await dialog().getByLabel("Expires", { exact: true }).selectOption({ label: "In 90 days" });
  await step("2-upload-key");
  await dialog().getByRole("button", { name: "Add key" }).click();
  await dialogGone();
  await page.locator("tbody tr").nth(1).waitFor();
  key.listed = await s.rows();
  await page.locator("#status:empty").waitFor({ state: "attached" }); // the toast, gone
  await step("2-keys");
  await page.getByRole("button", { name: `Remove key ${parsed.keyId}` }).click();
  await dialog().getByRole("heading", { name: "Remove this key?" }).waitFor();
  key.confirmFocus = await focused(page);
  await step("2-remove-key");
  await dialog().getByRole("button", { name: "Remove key" }).click();
  await dialogGone();
  await page.getByRole("button", { name: `Remove key ${parsed.keyId}` }).waitFor({ state: "detached" });
  await page.locator("tbody tr").first().waitFor();
  key.afterRemove = await s.rows();
  result.key = key;

  // 3. Federated credentials: the trusted issuer is offered; the credential is said in words.
  await page.getByRole("link", { name: "Federated credentials" }).click();
  await page.getByRole("heading", { name: "Federated credentials", level: 2 }).waitFor();
  await page.getByText("No federated credentials.").waitFor();
  await page.getByRole("button", { name: "Add federated credential" }).click();
  result.federatedIssuer = await dialog().getByLabel("Issuer (iss)", { exact: true }).inputValue();
  await dialog().getByLabel("Subject (sub)", { exact: true }).fill("system:serviceaccount:ci:deployer");
  await dialog().getByLabel("Audience (aud)", { exact: true }).fill("machine-secrets");
  await step("3-add-federated");
  await dialog().getByRole("button", { name: "Add credential" }).click();
  await dialogGone();
  await page.locator("tbody tr").first().waitFor();
  result.federated = await s.rows();
  await step("3-federated");
  await page.getByRole("button", { name: /^Remove federated credential/ }).click();
  await dialog().getByRole("button", { name: "Remove credential" }).click();
  await dialogGone();
  await page.getByText("No federated credentials.").waitFor();

  // 4. A project: a role, an API application (its secret shown once), a user grant; then each
  // removed, and the project.
  await page.getByRole("link", { name: "Projects", exact: true }).click();
  await heading("Projects").waitFor();
  await page.getByRole("button", { name: "New project" }).click();
  await dialog().getByLabel("Name", { exact: true }).fill(`Billing API ${width}`);
  await dialog().getByRole("button", { name: "Create" }).click();
  await heading(`Billing API ${width}`).waitFor();
  await page.getByText("No roles.").waitFor();
  // A role by keyboard: the dialog opens on its first field, Tab moves on, Enter submits.
  await page.getByRole("button", { name: "Add role" }).focus();
  await page.keyboard.press("Enter");
  await dialog().getByLabel("Key", { exact: true }).waitFor();
  result.roleDialogFocus = await focused(page);
  await page.keyboard.type("invoice.read");
  await page.keyboard.press("Tab");
  await page.keyboard.type("Reads invoices");
  await step("4-add-role");
  await page.keyboard.press("Enter");
  await dialogGone();
  await page.getByText("invoice.read", { exact: true }).waitFor();
  await page.getByRole("button", { name: "New API application" }).click();
  await dialog().getByLabel("Name", { exact: true }).fill("billing-api");
  await dialog().getByRole("button", { name: "Create" }).click();
  const app = await readOnce(s, "4-app-dialog", { clientId: "Client id", clientSecret: "Client secret", curl: "Check a token with curl" });
  // The API checks a token with it, at the introspection endpoint.
  const introspected = await fetch(`${origin}/oauth/v2/introspect`, {
    method: "POST",
    headers: { authorization: `Basic ${Buffer.from(`${encodeURIComponent(app.clientId)}:${encodeURIComponent(app.clientSecret)}`).toString("base64")}` },
    body: new URLSearchParams({ token: "not-a-token" }),
  });
  app.introspection = { status: introspected.status, body: await introspected.json() };
  await page.keyboard.press("Escape");
  await dialog().getByRole("button", { name: "Close it" }).click();
  await dialogGone();
  app.afterClose = await holds(page, cdp, app.clientSecret);
  result.app = app;
  await page.getByText("billing-api", { exact: true }).waitFor();
  await page.getByRole("button", { name: "Grant roles to a user" }).click();
  await dialog().getByLabel("User name", { exact: true }).fill(holder.userName);
  await dialog().getByLabel("invoice.read", { exact: true }).check();
  await step("4-grant");
  await dialog().getByRole("button", { name: "Grant" }).click();
  await dialogGone();
  await page.getByRole("link", { name: holder.userName }).waitFor();
  result.project = await s.rows();
  await page.locator("#status:empty").waitFor({ state: "attached" });
  await step("4-project");
  await page.getByRole("button", { name: `Remove the grant of ${holder.userName}` }).click();
  await dialog().getByRole("button", { name: "Remove grant" }).click();
  await dialogGone();
  await page.getByText("No user grants.").waitFor();
  await page.getByRole("button", { name: "Remove application billing-api" }).click();
  await dialog().getByRole("button", { name: "Remove application" }).click();
  await dialogGone();
  await page.getByText("No API applications.").waitFor();
  await page.getByRole("button", { name: "Remove role invoice.read" }).click();
  await dialog().getByRole("button", { name: "Remove role" }).click();
  await dialogGone();
  await page.getByText("No roles.").waitFor();
  await page.getByRole("button", { name: "Remove project" }).click();
  await dialog().getByRole("button", { name: "Remove project" }).click();
  await heading("Projects").waitFor();
  await page.locator("main .empty, main tbody").first().waitFor();
  result.projectListed = await page.getByRole("link", { name: `Billing API ${width}` }).count();

  // 5. Stop trusting the issuer.
  await page.getByRole("link", { name: "Trusted issuers" }).click();
  await heading("Trusted issuers").waitFor();
  await page.getByRole("button", { name: `Remove ${issuer}` }).click();
  result.untrustSays = await dialog().locator("p").first().textContent();
  await dialog().getByRole("button", { name: "Stop trusting" }).click();
  await dialogGone();
  await page.getByText(issuer, { exact: true }).waitFor({ state: "detached" });
  await s.context.close();
  return result;
}

const PARTS = { core, limits, sections, credentials };
const results = [];
try {
  for (const width of config.widths) results.push(await PARTS[config.part](width));
} catch (error) {
  // Where it stopped, for whoever reads the failure.
  for (const context of browser.contexts()) {
    for (const page of context.pages()) await page.screenshot({ path: `${config.screenshots}/failure.png`, fullPage: true });
  }
  throw error;
} finally {
  await browser.close();
}
console.log(JSON.stringify(results));
