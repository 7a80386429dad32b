// What the browser tests share: Debian's Chromium started the same way, the project's test
// binaries started and read until they say they are ready, and the checks every page keeps to.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Screenshots, kept as the tests' artifacts. */
export const ARTIFACTS = path.join(ROOT, '.local', 'browser');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** A binary of the workspace's debug build (`CARGO_TARGET_DIR` honoured). */
export function targetBinary(name) {
  return path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target'), 'debug', name);
}

/** Headless Chromium: no sandbox as root, no background connections (the network is closed). */
export async function launchBrowser() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

/**
 * Starts `binary` and resolves with `{ child, match }` once a line of its standard output matches
 * `ready`; rejects if it exits first. Its standard input stays open: closing it (or `stop`) ends it.
 */
export function startReady(binary, args, env, ready) {
  assert.ok(fs.existsSync(binary), `no ${binary}: cargo build -p integration-tests --bins`);
  const child = spawn(binary, args, { env, stdio: ['pipe', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`${path.basename(binary)} exited (${code}) before it was ready`)));
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const match = ready.exec(line);
      if (match) resolve({ child, match });
    });
  });
}

/**
 * The grant handler's portal behind a local server (portal-serve): its page, files and
 * configuration, `issuer` and `clientId` as its OIDC configuration; AWS pointed at a closed port
 * (the portal's routes call none). Resolves with `{ child, url }`.
 */
export async function startPortalServe(issuer, clientId) {
  const env = {
    PATH: process.env.PATH, OIDC_ISSUER: issuer, OIDC_CLIENT_ID: clientId, AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  const binary = process.env.PORTAL_SERVE || targetBinary('portal-serve');
  const { child, match } = await startReady(binary, [], env, /^portal: (http:\/\/\S+)$/);
  return { child, url: match[1] };
}

export function stop(child) {
  child.removeAllListeners('exit');
  child.stdin.end();
  child.kill();
}

/**
 * A new tab in its own browser context (its own sessionStorage), collecting script errors and
 * Content-Security-Policy violations; `ignore` matches console errors that are expected.
 */
export async function newTab(browser, ignore = /^$/) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error' && !ignore.test(m.text())) problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  await page.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  return { context, page, problems };
}

/** What every page keeps to: one h1; every field labelled; no CSP violation or script error. */
export async function checkPage(tab, name) {
  const { page, problems } = tab;
  assert.equal(await page.locator('h1').count(), 1, `${name}: one h1`);
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter((el) => el.offsetParent !== null)
    .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
    .map((el) => el.outerHTML));
  assert.deepEqual(unlabelled, [], `${name}: unlabelled controls`);
  assert.deepEqual(await page.evaluate(() => window.__violations), [], `${name}: CSP violations`);
  assert.deepEqual(problems, [], `${name}: console errors`);
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Navigates with the keyboard (focus the link, Enter) and checks that focus lands on the h1. */
export async function navigate(page, link, heading) {
  await page.getByRole('link', { name: link, exact: true }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
  await page.waitForFunction((h) => document.activeElement && document.activeElement.tagName === 'H1'
    && document.activeElement.textContent === h, heading);
}

/** Screenshots of every open tab, `${prefix}-failed-N.png`: what the pages showed when a test failed. */
export async function screenshotAll(browser, prefix) {
  let n = 0;
  for (const context of browser.contexts()) {
    for (const page of context.pages()) {
      n += 1;
      await page.screenshot({ path: path.join(ARTIFACTS, `${prefix}-failed-${n}.png`), fullPage: true }).catch(() => {});
    }
  }
}

/**
 * Runs `body`, then `cleanup` whatever happened; exits 1 with the error if `body` failed, after
 * screenshots of the open tabs when a browser is given.
 */
export async function run(body, cleanup, { browser, prefix } = {}) {
  let failed = null;
  try {
    await body();
  } catch (error) {
    failed = error;
    if (browser) await screenshotAll(browser, prefix || 'test');
  } finally {
    await cleanup();
  }
  if (failed) {
    console.error(failed);
    process.exit(1);
  }
}
