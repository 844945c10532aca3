// Open an authorization URL in headless Chromium, submit the consent form as a user would,
// and print where the browser landed, as JSON on one line.
// Usage: node consent.mjs AUTHORIZATION_URL CALLBACK_PREFIX [approve|deny]
import { chromium } from 'playwright-core';

const [url, callbackPrefix, button = 'approve'] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Root in a container has no user namespace for Chromium's sandbox.
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage();
  // Only loopback: anything else is aborted rather than fetched.
  await page.route(/^(?!http:\/\/127\.0\.0\.1[:/]).*/, (route) => route.abort());
  await page.goto(url);
  const title = await page.title();
  const scopes = await page.locator('li code').allTextContents();
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(callbackPrefix), { timeout: 15000 }),
    page.click(`#${button}`),
  ]);
  const body = await page.locator('body').textContent();
  console.log(JSON.stringify({ title, scopes, finalUrl: page.url(), body }));
} finally {
  await browser.close();
}
