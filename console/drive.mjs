// Drives the console in headless Debian Chromium with playwright-core, as a person would, at each
// width: sign in with a PAT, create a machine user, find it, create a secret and read it from the
// dialog, rotate, delete, sign in as a user without permission, sign out, and a session that ends.
//   node drive.mjs '{"console": URL, "adminToken": ..., "refused": {"clientId", "clientSecret"},
//                    "markupName": ..., "otherOrg": NAME, "screenshots": DIR, "widths": [1280, 390]}'
// Prints one JSON object per width: what the page showed, the secrets it gave, and every problem
// seen (a console error, a control without a name, a page wider than the screen, a secret that
// outlived its dialog). tests/test_console.py judges it.
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const origin = new URL(config.console).origin;
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

async function run(width) {
  const context = await browser.newContext({
    viewport: { width, height: width > 600 ? 860 : 844 },
    permissions: ["clipboard-read", "clipboard-write"],
  });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("HeapProfiler.enable");
  const result = { width, steps: [], problems: [], requests: [], secrets: {} };
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warning") result.problems.push(`console ${message.type()}: ${message.text()}`);
  });
  page.on("pageerror", (error) => result.problems.push(`page error: ${error}`));
  page.on("request", (request) => result.requests.push(request.url()));
  const step = async (name) => {
    for (const problem of await checkPage(page)) result.problems.push(`${name}: ${problem}`);
    await page.screenshot({ path: `${config.screenshots}/${width}-${name}.png`, fullPage: true });
    result.steps.push(name);
  };
  const heading = (text) => page.getByRole("heading", { level: 1, name: text });
  const dialog = () => page.getByRole("dialog");
  // Gone from the page, not only hidden: a closed <dialog> stays in the DOM until its "close"
  // event (a task later) removes it, and role locators stop seeing it as soon as it is hidden.
  const dialogGone = () => page.waitForFunction(() => document.querySelector("dialog") === null);

  // 1. Sign in with the admin's PAT, by keyboard.
  await page.goto(config.console);
  await heading("Sign in to the console").waitFor();
  await step("1-sign-in");
  await page.getByLabel("Personal access token", { exact: true }).fill(config.adminToken);
  await page.keyboard.press("Tab");
  result.focusOutline = await page.evaluate(() => {
    const style = getComputedStyle(document.activeElement);
    return { element: document.activeElement.tagName, style: style.outlineStyle, width: style.outlineWidth };
  });
  await page.keyboard.press("Shift+Tab");
  await page.keyboard.press("Enter");
  await heading("Machine users").waitFor();
  result.storage = await page.evaluate(() => ({ session: Object.keys(sessionStorage), local: localStorage.length }));
  // A name that is markup is shown as text (and the policy would refuse its script with an error).
  await page.locator("tbody").waitFor();
  result.markupShownAsText = await page.getByText(config.markupName, { exact: true }).count();
  result.images = await page.locator("main img").count();
  await step("1-users");

  // Another organisation: its users, a page at a time; then back.
  const pageShown = async () => [
    await page.locator(".pager span").textContent(),
    await page.locator("tbody tr").count(),
    await page.getByRole("button", { name: "Next" }).isEnabled(),
  ];
  await page.getByLabel("Organisation", { exact: true }).selectOption({ label: config.otherOrg });
  await page.getByRole("link", { name: "fleet-00" }).waitFor();
  result.otherOrgPages = [await pageShown()];
  await step("1-other-org");
  await page.getByRole("button", { name: "Next" }).click();
  await page.getByRole("link", { name: "fleet-24" }).waitFor();
  result.otherOrgPages.push(await pageShown());
  await step("1-page-2");
  await page.getByRole("button", { name: "Previous" }).click();
  await page.getByRole("link", { name: "fleet-00" }).waitFor();
  result.otherOrgPages.push(await pageShown());
  await page.getByLabel("Organisation", { exact: true }).selectOption({ label: "default" });
  await page.getByRole("link", { name: "admin", exact: true }).waitFor();

  // 2. Create a machine user, then find it by searching.
  const userName = `console-${width}-${Date.now().toString(36)}`;
  await page.getByRole("button", { name: "New machine user" }).click();
  await dialog().getByLabel("User name", { exact: true }).fill(userName);
  await dialog().getByLabel("Name", { exact: true }).fill(`Billing exporter (${width} px)`);
  await dialog().getByLabel("Description (optional)", { exact: true }).fill("Sends invoices to the ledger every night");
  await step("2-new-user");
  await dialog().getByRole("button", { name: "Create" }).click();
  await heading(userName).waitFor();
  result.userName = userName;
  await page.getByRole("link", { name: "← Machine users" }).click();
  await heading("Machine users").waitFor();
  await page.getByLabel("Search by user name", { exact: true }).fill(`console-${width}-`);
  await page.keyboard.press("Enter");
  await page.getByRole("link", { name: userName }).waitFor();
  result.found = await page.locator("tbody tr").count();
  await step("2-search");
  await page.getByRole("link", { name: userName }).click();
  await heading(userName).waitFor();
  await page.getByText("No secrets.").waitFor();
  await step("2-user");

  // 3. Create a secret and read it from the dialog, the copy button included.
  const readDialog = async (name) => {
    const once = dialog();
    await once.getByRole("heading", { name: "Copy the new client secret now" }).waitFor();
    const shown = {
      clientId: await once.getByLabel("Client id", { exact: true }).inputValue(),
      clientSecret: await once.getByLabel("Client secret", { exact: true }).inputValue(),
      curl: await once.getByLabel("Get an access token with curl", { exact: true }).inputValue(),
      warning: await once.locator(".warning").textContent(),
    };
    await once.getByRole("button", { name: "Copy client secret" }).click();
    shown.copied = (await page.evaluate(() => navigator.clipboard.readText())) === shown.clientSecret;
    await page.evaluate(() => navigator.clipboard.writeText(""));
    await step(name);
    return shown;
  };
  await page.getByRole("button", { name: "New secret" }).click();
  await dialog().getByLabel("Description (optional)", { exact: true }).fill("first: the nightly job");
  await dialog().getByLabel("Expires", { exact: true }).selectOption({ label: "In 90 days" });
  await step("3-new-secret");
  await dialog().getByRole("button", { name: "Create secret" }).click();
  const first = await readDialog("3-secret-dialog");
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
  await dialog().getByRole("button", { name: "Done: I have stored it" }).click();
  await dialogGone();
  first.afterClose = await holds(page, cdp, first.clientSecret);
  await page.getByRole("cell", { name: "first: the nightly job" }).waitFor();
  await step("3-secrets");
  result.secrets.first = first;

  // 4. Rotate with a day's grace: two secrets, the old one now expiring tomorrow, the new one never.
  await page.getByRole("button", { name: "Rotate" }).click();
  await dialog().getByLabel("Grace period for the other secrets", { exact: true }).selectOption({ label: "1 day" });
  await dialog().getByLabel("Description (optional)", { exact: true }).fill("second: after rotation");
  await step("4-rotate");
  await dialog().getByRole("button", { name: "Rotate" }).click();
  const second = await readDialog("4-secret-dialog");
  await page.keyboard.press("Escape");
  await dialogGone();
  second.afterClose = await holds(page, cdp, second.clientSecret);
  await page.getByRole("cell", { name: "second: after rotation" }).waitFor();
  result.secrets.second = second;
  result.afterRotation = await page.locator("tbody tr").evaluateAll((rows) =>
    rows.map((row) => Object.fromEntries([...row.cells].map((c) => [c.dataset.label, c.textContent.trim()]))));
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

  // 6. Sign in as a machine user without permission: the refusal says what is missing.
  await page.getByRole("button", { name: "Sign out" }).click();
  await heading("Sign in to the console").waitFor();
  await page.getByLabel("A machine user's client id and secret", { exact: true }).check();
  await page.getByLabel("Client id", { exact: true }).fill(config.refused.clientId);
  await page.getByLabel("Client secret", { exact: true }).fill(config.refused.clientSecret);
  await page.getByRole("button", { name: "Sign in" }).click();
  await heading("Machine users").waitFor();
  await page.getByRole("alert").waitFor();
  result.refusal = await page.getByRole("alert").textContent();
  result.whoRefused = await page.locator(".who").textContent();
  await step("6-refused");

  // 7. Sign out: the token is forgotten.
  await page.getByRole("button", { name: "Sign out" }).click();
  await heading("Sign in to the console").waitFor();
  result.signedOut = {
    notice: await page.locator(".notice").textContent(),
    session: await page.evaluate(() => sessionStorage.length),
    local: await page.evaluate(() => localStorage.length),
  };
  await step("7-signed-out");

  // 8. A session whose token stops working returns to sign-in.
  await page.evaluate(() => sessionStorage.setItem("machine-secrets.token", "not-a-token"));
  await page.reload();
  await heading("Sign in to the console").waitFor();
  result.ended = await page.locator(".notice").textContent();
  await step("8-session-ended");
  await context.close();
  return result;
}

const results = [];
try {
  for (const width of config.widths) results.push(await run(width));
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
