// Drives the page in headless Debian Chromium with playwright-core, as a person would:
//   node drive.mjs PAGE_URL TOKEN API_URL...
// For each API URL it creates a secret, then tries an unknown user, and prints what the page shows.
import { chromium } from "playwright-core";

const [pageUrl, token, ...apis] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-quic", "--disable-sync",
         // A test's own trust, e.g. --ignore-certificate-errors-spki-list=<its throwaway key's hash>.
         ...(process.env.CHROMIUM_ARGS ?? "").split(" ").filter(Boolean)],
});
const results = [];
try {
  for (const api of apis) {
    const page = await browser.newPage();
    const problems = [];
    page.on("pageerror", (error) => problems.push(String(error)));
    await page.goto(`${pageUrl}#api=${encodeURIComponent(api)}&token=${encodeURIComponent(token)}`);
    await page.click("#create");
    await page.waitForFunction(() => document.querySelector("#client-secret").textContent ||
                                      document.querySelector("#error").textContent, null, { timeout: 20000 });
    const created = {
      clientId: await page.textContent("#client-id"),
      clientSecret: await page.textContent("#client-secret"),
      sequence: await page.textContent("#sequence"),
      error: await page.textContent("#error"),
    };
    await page.click("#unknown");
    await page.waitForFunction(() => document.querySelector("#error").textContent, null, { timeout: 20000 });
    results.push({ api, created, unknown: await page.textContent("#error"), problems });
    if (process.env.SCREENSHOT_DIR) await page.screenshot({ path: `${process.env.SCREENSHOT_DIR}/${results.length}.png` });
    await page.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(results));
