// The portal in headless Chromium, served by the grant function's handler (portal-serve):
// - it loads, shows its sign-in button, and the keyboard reaches it (skip link first);
// - no Content-Security-Policy violation and no script error, on load and through sign-in;
// - sign-in runs authorization code + PKCE against a stand-in issuer started here, which checks
//   the S256 challenge against the verifier, and the ID token goes to the API as the bearer
//   token (portal-serve verifies no token, so the API answers 401 and the page asks to sign in
//   again; e2e.mjs signs in for real, through the local issuer and the JWT-checking local API);
// - a sign-in answer whose `state` was not issued here is refused;
// - prints the first load's transferred bytes (asserted under 100 KB) and its time to interactive.
//
// Usage: PORTAL_SERVE=target/debug/portal-serve node tests/browser/smoke.mjs
// (scripts/test.sh builds portal-serve and installs Chromium and playwright-core first).
// Screenshots go to .local/browser/.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { ARTIFACTS, launchBrowser, newTab, run, startPortalServe, stop } from './lib.mjs';

const CLIENT_ID = 'portal-smoke';

const b64url = (buffer) => Buffer.from(buffer).toString('base64url');

/** A stand-in OpenID provider: discovery, authorize (redirects straight back), token (PKCE checked). */
function startIssuer() {
  const seen = { authorize: null, token: null, tokens: [] };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, issuer.origin);
    const cors = { 'access-control-allow-origin': '*', 'cache-control': 'no-store' };
    if (req.method === 'GET' && url.pathname === '/issuer/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json', ...cors });
      res.end(JSON.stringify({
        issuer: issuer.url, authorization_endpoint: `${issuer.url}/authorize`, token_endpoint: `${issuer.url}/token`,
        jwks_uri: `${issuer.url}/jwks`, response_types_supported: ['code'], subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'], code_challenge_methods_supported: ['S256'],
      }));
    } else if (req.method === 'GET' && url.pathname === '/issuer/authorize') {
      const p = Object.fromEntries(url.searchParams);
      seen.authorize = p;
      const back = new URL(p.redirect_uri);
      back.searchParams.set('code', 'code-' + crypto.randomUUID());
      back.searchParams.set('state', p.state);
      seen.code = back.searchParams.get('code');
      res.writeHead(302, { location: back.href });
      res.end();
    } else if (req.method === 'POST' && url.pathname === '/issuer/token') {
      let body = '';
      req.on('data', (chunk) => { body += chunk; });
      req.on('end', () => {
        const p = Object.fromEntries(new URLSearchParams(body));
        seen.token = p;
        const a = seen.authorize || {};
        const challenge = b64url(crypto.createHash('sha256').update(p.code_verifier || '').digest());
        const ok = p.grant_type === 'authorization_code' && p.code === seen.code && p.client_id === CLIENT_ID
          && p.redirect_uri === a.redirect_uri && challenge === a.code_challenge;
        if (!ok) {
          res.writeHead(400, { 'content-type': 'application/json', ...cors });
          res.end(JSON.stringify({ error: 'invalid_grant', error_description: 'PKCE or code mismatch' }));
          return;
        }
        const now = Math.floor(Date.now() / 1000);
        const claims = {
          iss: issuer.url, aud: CLIENT_ID, sub: 'sub-bob', email: 'bob@example.com', email_verified: true,
          nonce: a.nonce, iat: now, exp: now + 3600,
        };
        const token = [{ alg: 'RS256', typ: 'JWT', kid: 'smoke' }, claims].map((part) => b64url(JSON.stringify(part))).join('.') + '.c2lnbmF0dXJl';
        seen.tokens.push(token);
        res.writeHead(200, { 'content-type': 'application/json', ...cors });
        res.end(JSON.stringify({ access_token: 'opaque', token_type: 'Bearer', expires_in: 3600, id_token: token }));
      });
    } else {
      res.writeHead(404, cors);
      res.end();
    }
  });
  const issuer = { server, seen };
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    issuer.origin = `http://127.0.0.1:${server.address().port}`;
    issuer.url = `${issuer.origin}/issuer`;
    resolve(issuer);
  }));
}

const issuer = await startIssuer();
const portal = await startPortalServe(issuer.url, CLIENT_ID);
const browser = await launchBrowser();
await run(async () => {
  // The 401 of /me is expected: portal-serve verifies no token.
  const tab = await newTab(browser, /status of 401/);
  const { context, page } = tab;

  // First load: transferred bytes (headers included) of every request, and time to interactive.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  const transfers = new Map();
  cdp.on('Network.responseReceived', (e) => transfers.set(e.requestId, { url: e.response.url, bytes: 0 }));
  cdp.on('Network.loadingFinished', (e) => { if (transfers.has(e.requestId)) transfers.get(e.requestId).bytes = e.encodedDataLength; });

  const response = await page.goto(portal.url, { waitUntil: 'networkidle' });
  assert.equal(response.status(), 200);
  const csp = response.headers()['content-security-policy'] || '';
  assert.match(csp, /default-src 'none'/);
  assert.ok(csp.includes(`connect-src 'self' ${issuer.origin}`), csp);
  const signIn = page.getByRole('button', { name: 'Sign in' });
  await signIn.waitFor();
  assert.equal(await signIn.isEnabled(), true, 'sign-in is configured');
  // The page marks when its first render is done (sign-in button in place, handlers wired).
  const tti = await page.evaluate(() => Math.round(performance.getEntriesByName('portal-interactive')[0].startTime));
  const timing = await page.evaluate(() => performance.getEntriesByType('navigation')[0].toJSON());
  await page.screenshot({ path: path.join(ARTIFACTS, 'sign-in.png'), fullPage: true });
  const firstLoad = [...transfers.values()];
  const total = firstLoad.reduce((sum, t) => sum + t.bytes, 0);
  console.log(`first load: ${total} bytes transferred in ${firstLoad.length} requests `
    + `(${firstLoad.map((t) => `${new URL(t.url).pathname} ${t.bytes}`).join(', ')})`);
  console.log(`time to interactive (first render done, sign-in ready): ${tti} ms; DOM interactive ${Math.round(timing.domInteractive)} ms, `
    + `load event ${Math.round(timing.loadEventEnd)} ms`);
  assert.ok(total < 100_000, `first load ${total} bytes`);
  assert.equal(await page.title(), 'Sign in · Access requests');
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Sign in');
  assert.equal(await page.locator('#nav').isHidden(), true, 'no page links before sign-in');

  // Keyboard: the skip link first, then the sign-in button.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'sign-in');

  // Sign in with the keyboard: to the issuer and back, the code exchanged with the PKCE verifier,
  // the ID token sent to the API as the bearer token.
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: false });
  const me = page.waitForRequest((r) => new URL(r.url()).pathname === '/me');
  await page.keyboard.press('Enter');
  const meRequest = await me;
  assert.equal(issuer.seen.authorize.code_challenge_method, 'S256');
  assert.equal(issuer.seen.authorize.scope, 'openid email profile');
  assert.equal(issuer.seen.authorize.redirect_uri, portal.url, 'the redirect URI is the portal\'s URL');
  assert.ok(issuer.seen.authorize.state && issuer.seen.authorize.nonce, 'state and nonce sent');
  assert.equal(issuer.seen.tokens.length, 1, 'the stand-in issuer accepted the PKCE exchange');
  assert.equal(meRequest.headers().authorization, `Bearer ${issuer.seen.tokens[0]}`);
  // portal-serve checks no token: the API answers 401, and the page says so and offers sign-in.
  await page.getByTestId('result').filter({ hasText: 'sign in again' }).waitFor();
  await signIn.waitFor();
  assert.equal(new URL(page.url()).search, '', 'the code and state are gone from the address');
  assert.deepEqual(await page.evaluate(() => Object.keys(sessionStorage).filter((k) => k !== 'jit.discovery')), []);
  await page.screenshot({ path: path.join(ARTIFACTS, 'after-401.png'), fullPage: true });

  // A sign-in answer nobody here asked for.
  await page.goto(`${portal.url}?code=forged&state=forged`);
  await page.getByTestId('problem').filter({ hasText: '(state)' }).waitFor();
  assert.equal(issuer.seen.tokens.length, 1, 'a forged answer is never exchanged');

  const violations = await page.evaluate(() => window.__violations);
  assert.deepEqual(violations, [], 'Content-Security-Policy violations');
  assert.deepEqual(tab.problems, [], 'console errors (but the 401 of /me)');
  console.log('browser smoke test: passed');
}, async () => {
  await browser.close();
  stop(portal.child);
  issuer.server.close();
}, { browser, prefix: 'smoke' });
