// A real browser for the console's tests: Debian's Chromium driven by playwright-core (no browser download).
// Each test gets a fresh context (its own cookies); every page is checked by axe-core and fails its test on a
// console error or an uncaught exception.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { AxeBuilder } from '@axe-core/playwright';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';

/** Debian's package (`apt-get install -y chromium`, which .ci/run does when it is missing), or CHROMIUM_PATH. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const SCREENSHOTS_DIR = path.resolve('test-results/screenshots');

// Chromium's own background traffic (updates, sync, Google lookups) is refused by a closed network; these flags
// stop it trying.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

export function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`No Chromium at ${CHROMIUM_PATH}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
}

export interface ConsolePage {
  context: BrowserContext;
  page: Page;
  /** Errors the page logged or threw so far; tests assert it stays empty. */
  errors: string[];
}

/** A fresh context (no cookies) and a page on the console at `origin`. */
export async function openConsole(browser: Browser, origin: string): Promise<ConsolePage> {
  const context = await browser.newContext({ baseURL: origin, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    // A 4xx answer the page handles (shown as words) is logged by Chromium as a failed resource; not a page error.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      errors.push(`console: ${message.text()}`);
    }
  });
  return { context, page, errors };
}

/** Serious and critical axe-core violations on the page as it is now, as readable lines (empty: none). */
export async function accessibilityViolations(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations
    .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
    .map(
      (violation) =>
        `${violation.id} (${violation.impact}): ${violation.help} — ${violation.nodes.map((n) => n.target.join(' ')).join(', ')}`,
    );
}

/** Saves a full-page screenshot as test-results/screenshots/<name>.png (git-ignored). */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(SCREENSHOTS_DIR, { recursive: true });
  const file = path.join(SCREENSHOTS_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** The focused control as `tag:accessible name`, or null on the body. */
const ACTIVE_CONTROL = `(() => {
  const element = document.activeElement;
  if (!element || element === document.body) return null;
  const label =
    element.getAttribute('aria-label') ??
    (element.id ? document.querySelector('label[for="' + element.id + '"]')?.textContent : null) ??
    element.closest('label')?.textContent ??
    element.textContent ??
    '';
  return element.tagName.toLowerCase() + ':' + label.trim().replace(/\\s+/g, ' ');
})()`;

/**
 * Tabs through the page and returns the accessible names of the controls reached, in order: a control a test
 * expects to be reachable by keyboard must be in it.
 */
export async function keyboardReachable(page: Page, maxTabs = 80): Promise<string[]> {
  await page.locator('body').focus();
  const reached: string[] = [];
  for (let i = 0; i < maxTabs; i++) {
    await page.keyboard.press('Tab');
    // A string, not a function: the test project's types have no DOM.
    const name = await page.evaluate<string | null>(ACTIVE_CONTROL);
    if (name === null) continue;
    if (reached[0] === name && reached.length > 1) break;
    reached.push(name);
  }
  return reached;
}

/**
 * Logs the browser in through the console's real log-in page (the refresh token lands in the HttpOnly cookie)
 * and waits until the signed-in navigation shows.
 */
export async function logInBrowser(page: Page, email: string, password: string): Promise<void> {
  await page.goto('/login');
  await page.getByLabel('E-mail address').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
}

/** Draws a 7 as a person does on a "Try it" canvas with the mouse: the bar, then the stroke down to the left. */
export async function drawSeven(page: Page, canvas: Locator): Promise<void> {
  await canvas.scrollIntoViewIfNeeded();
  const box = (await canvas.boundingBox())!;
  const at = (x: number, y: number) => [box.x + box.width * x, box.y + box.height * y] as const;
  await page.mouse.move(...at(0.25, 0.22));
  await page.mouse.down();
  await page.mouse.move(...at(0.75, 0.22), { steps: 10 });
  await page.mouse.move(...at(0.42, 0.85), { steps: 14 });
  await page.mouse.up();
}
