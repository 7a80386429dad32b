// The portal's pages in headless Chromium, with the API's answers canned in the browser
// (Playwright's request routing): the page, its files and its configuration come from the grant
// handler (portal-serve); every API call is answered here as the handlers answer it, and each
// request the page sends is checked. Signed in by putting a session in sessionStorage (the
// sign-in itself is smoke.mjs's). Covers:
// - request access: rule terms, the duration picker bounded by the rule, the ticket hint, break
//   glass, the request sent (Idempotency-Key), 202 said in the live region, a 422's detail shown;
// - my access: time left, extend (200), give up (DELETE);
// - approvals: a denial needs a comment, an approval sent with its comment;
// - administration for admins only: active grants, sync status, audit search;
// - on every page: one h1, focused after navigation; every field labelled; no CSP violation,
//   no script error. Screenshots of each page go to .local/browser/.
// e2e.mjs runs the same pages against the real handlers, signed in at the local issuer.
//
// Usage: PORTAL_SERVE=target/debug/portal-serve node tests/browser/pages.mjs

import assert from 'node:assert/strict';
import { checkPage, launchBrowser, navigate, newTab, run, startPortalServe, stop } from './lib.mjs';

const ISSUER = 'http://127.0.0.1:9/issuer';
const CLIENT_ID = 'portal-pages';

const hours = (n) => new Date(Date.now() + n * 3600e3).toISOString().replace(/\.\d+Z$/, 'Z');
const user = (email) => ({ integration: 'corp', id: `u-${email.split('@')[0]}`, email });

const GROUPS = [
  { integration: 'corp', id: 'g-db', name: 'prod-db-admins', description: 'Production databases', max_duration: '2h',
    approval_required: true, auto_approve_up_to: '30m', break_glass: true, ticket: '^INC-[0-9]+$', extend_max_total: '8h' },
  { integration: 'corp', id: 'g-oncall', name: 'eng-oncall', description: null, max_duration: '4h',
    approval_required: false, auto_approve_up_to: null, break_glass: false, ticket: null, extend_max_total: '4h' },
];

function grant(fields) {
  return {
    id: '3f9a1c2e-5b7d-4e8f-9a0b-00000000000' + (fields.n || 1), integration: 'corp',
    user: { id: 'u-bob', email: 'bob@example.com' }, group: { id: 'g-db', name: 'prod-db-admins' },
    status: 'active', requested_at: hours(-1), granted_at: hours(-1), expires_at: hours(1), ended_at: null,
    duration: '2h', requested_by: 'http://127.0.0.1:9/issuer#sub-bob', requester: { id: 'u-bob', email: 'bob@example.com' },
    reason: 'INC-42 restore a table', break_glass: false, approvals_required: 1, approvals: [],
    approvers: ['carol@example.com'], request_expires_at: null, decided_by: null, pending_extension: null,
    extensions: [], preexisting_membership: false, ...fields,
  };
}

/** A browser tab signed in as `email`, the API answered by `api(method, path, params, body, headers)`. */
async function signedIn(browser, portalUrl, email, api) {
  // The 4xx answered on purpose (a 422's detail shown) log console errors: expected.
  const tab = await newTab(browser, /status of 4\d\d/);
  const { page, problems } = tab;
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: ISSUER, aud: CLIENT_ID, sub: `sub-${email.split('@')[0]}`, email, exp: now + 3600, iat: now };
  const token = `eyJhbGciOiJub25lIn0.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;
  await page.addInitScript(([session]) => {
    if (!sessionStorage.getItem('jit.session')) sessionStorage.setItem('jit.session', session);
  }, [JSON.stringify({ idToken: token, claims })]);
  const sent = [];
  await page.route((url) => url.origin === new URL(portalUrl).origin
    && !url.pathname.startsWith('/assets/') && url.pathname !== '/' && url.pathname !== '/portal/config.json', async (route) => {
    const request = route.request();
    const url = new URL(request.url());
    assert.equal(request.headers().authorization, `Bearer ${token}`, `${url.pathname}: the ID token as the bearer token`);
    const body = request.postData() ? JSON.parse(request.postData()) : undefined;
    sent.push({ method: request.method(), path: url.pathname, params: Object.fromEntries(url.searchParams), body, headers: request.headers() });
    const [status, answer] = api(request.method(), url.pathname, Object.fromEntries(url.searchParams), body) || [404, { title: 'Not Found', status: 404, detail: `no route ${url.pathname}` }];
    const type = status >= 400 ? 'application/problem+json' : 'application/json';
    await route.fulfill({ status, contentType: type, body: JSON.stringify(answer) });
  });
  await page.goto(portalUrl);
  return { ...tab, sent };
}

const portal = await startPortalServe(ISSUER, CLIENT_ID);
const browser = await launchBrowser();
await run(async () => {
  // --- bob, a requester -------------------------------------------------------------------
  let rejectNext = false;
  let active = [grant({})];
  const bob = await signedIn(browser, portal.url, 'bob@example.com', (method, p, params, body) => {
    if (method === 'GET' && p === '/me') return [200, { id: `${ISSUER}#sub-bob`, admin: false, users: [user('bob@example.com')] }];
    if (method === 'GET' && p === '/groups') return [200, { groups: GROUPS }];
    if (method === 'POST' && p === '/grants') {
      if (rejectNext) return [422, { type: 'about:blank', title: 'Unprocessable Entity', status: 422, detail: 'the reason must contain a match of ^INC-[0-9]+$' }];
      return [202, grant({ n: 2, status: 'pending_approval', granted_at: null, expires_at: null, duration: body.duration, reason: body.reason, request_expires_at: hours(24) })];
    }
    if (method === 'GET' && p === '/grants' && params.status === 'active') return [200, { grants: active, next: null }];
    if (method === 'GET' && p === '/grants' && params.status === 'pending_approval') {
      return [200, { grants: [grant({ n: 3, status: 'pending_approval', granted_at: null, expires_at: null, request_expires_at: hours(20) })], next: null }];
    }
    if (method === 'GET' && p === '/grants' && params.awaiting === 'me') return [200, { grants: [], next: null }];
    if (method === 'POST' && /\/extend$/.test(p)) return [200, grant({ expires_at: hours(1.5) })];
    if (method === 'DELETE' && p.startsWith('/grants/')) {
      active = [];
      return [200, grant({ status: 'revoked', ended_at: hours(0) })];
    }
    return null;
  });
  const page = bob.page;
  await page.getByRole('heading', { level: 1, name: 'Request access' }).waitFor();
  assert.equal(await page.getByTestId('signed-in-as').textContent(), 'Signed in as bob@example.com');
  assert.equal(await page.getByTestId('nav-admin').isHidden(), true, 'no admin page for bob');
  assert.match(await page.getByText('up to 2 hours · approval needed beyond 30 minutes').textContent(), /a ticket reference in the reason · break glass allowed/);
  await page.getByLabel('prod-db-admins').check();
  const durations = await page.getByLabel('Duration').locator('option').allTextContents();
  assert.deepEqual(durations, ['15 minutes', '30 minutes', '1 hour', '2 hours'], 'bounded by the rule\'s 2h');
  assert.match(await page.getByText(/ticket reference that matches/).textContent(), /\^INC-\[0-9\]\+\$/);
  assert.equal(await page.getByLabel('Break glass: skip approval').isVisible(), true);
  await page.getByLabel('Duration').selectOption('1h');
  await page.getByLabel('Reason').fill('INC-42 restore a table');
  await checkPage(bob, 'request-access');
  await page.getByRole('button', { name: 'Request access' }).click();
  await bob.page.getByTestId('result').filter({ hasText: 'awaits approval by carol@example.com' }).waitFor();
  const post = bob.sent.find((s) => s.method === 'POST' && s.path === '/grants');
  assert.deepEqual(post.body, { group: 'g-db', integration: 'corp', duration: '1h', reason: 'INC-42 restore a table' });
  assert.match(post.headers['idempotency-key'], /^[0-9a-f-]{36}$/);
  // A refusal: its problem+json detail, in the alert region.
  rejectNext = true;
  await page.getByLabel('eng-oncall').check();
  assert.equal(await page.getByLabel('Break glass: skip approval').isVisible(), false, 'no break glass for eng-oncall');
  await page.getByLabel('Reason').fill('no ticket');
  await page.getByRole('button', { name: 'Request access' }).click();
  await page.getByTestId('problem').filter({ hasText: 'the reason must contain a match of ^INC-[0-9]+$' }).waitFor();

  // My access: time left, extend, give up.
  await navigate(page, 'My access', 'My access');
  const card = page.getByTestId('grant-card').and(page.locator('[data-status="active"]'));
  await card.waitFor();
  assert.match(await card.getByTestId('time-left').textContent(), /^(59 minutes|1 hour) left$/);
  assert.equal(await page.locator('[data-status="pending_approval"]').count(), 1);
  await checkPage(bob, 'my-access');
  await card.getByRole('button', { name: 'Extend access to prod-db-admins' }).first().click();
  await page.getByLabel('Extend by').selectOption('30m');
  await page.locator('[data-testid="extend-reason"]').fill('INC-42 still restoring');
  await page.getByRole('button', { name: 'Extend access to prod-db-admins' }).last().click();
  await page.getByTestId('result').filter({ hasText: 'now lasts until' }).waitFor();
  const extend = bob.sent.find((s) => s.path.endsWith('/extend'));
  assert.deepEqual(extend.body, { duration: '30m', reason: 'INC-42 still restoring' });
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Give up access to prod-db-admins' }).click();
  await page.getByTestId('result').filter({ hasText: 'You gave up your access to prod-db-admins' }).waitFor();
  assert.ok(bob.sent.some((s) => s.method === 'DELETE' && s.path === '/grants/3f9a1c2e-5b7d-4e8f-9a0b-000000000001'));
  await page.getByTestId('no-active').waitFor();

  await navigate(page, 'Approvals', 'Approvals');
  await page.getByTestId('no-approvals').waitFor();
  await checkPage(bob, 'approvals-none');
  await page.goto(`${portal.url}#/admin`);
  await page.getByText('Only admins see this page.').waitFor();

  // --- carol, bob's manager: approvals -------------------------------------------------------
  // Two pages awaiting her: bob's request, then (`next`) bob's extension of an active grant.
  const pending = grant({ n: 2, status: 'pending_approval', granted_at: null, expires_at: null, request_expires_at: hours(23) });
  const extension = grant({ n: 4, expires_at: hours(1), pending_extension: {
    duration: '1h', reason: 'INC-42 the restore runs long', by: 'bob@example.com', at: hours(-0.1),
    approvals_required: 1, approvals: [], approvers: ['carol@example.com'], request_expires_at: hours(23) } });
  const carol = await signedIn(browser, `${portal.url}#/approvals`, 'carol@example.com', (method, p, params, body) => {
    if (method === 'GET' && p === '/me') return [200, { id: `${ISSUER}#sub-carol`, admin: false, users: [user('carol@example.com')] }];
    if (method === 'GET' && p === '/groups') return [200, { groups: [] }];
    if (method === 'GET' && p === '/grants' && params.awaiting === 'me' && params.next === 'ext:') return [200, { grants: [extension], next: null }];
    if (method === 'GET' && p === '/grants' && params.awaiting === 'me') return [200, { grants: [pending], next: 'ext:' }];
    if (method === 'POST' && p === `/grants/${extension.id}/approve`) {
      return [200, { ...extension, expires_at: hours(2), pending_extension: null, extensions: [{ duration: '1h', by: 'bob@example.com', at: hours(0), reason: 'INC-42 the restore runs long' }] }];
    }
    if (method === 'POST' && p.endsWith('/approve')) return [200, { ...pending, status: 'active', approvals: [{ by: 'carol@example.com', at: hours(0), comment: body.comment }] }];
    return null;
  });
  await carol.page.getByRole('heading', { level: 1, name: 'Approvals' }).waitFor();
  const extensionCard = carol.page.locator('[data-testid="approval-card"][data-kind="extension"]');
  await extensionCard.waitFor();
  assert.ok(carol.sent.some((s) => s.params.awaiting === 'me' && s.params.next === 'ext:'), 'the second page is read');
  await checkPage(carol, 'approvals');
  const shown = await extensionCard.textContent();
  assert.match(shown, /extension/, 'labelled as an extension');
  assert.match(shown, /extend by 1 hour/);
  assert.match(shown, /INC-42 the restore runs long/);
  assert.match(shown, /Expires now/);
  assert.equal(await carol.page.locator('[data-kind="request"]').count(), 1, 'the request is still a request');
  await carol.page.getByRole('button', { name: 'Deny bob@example.com for prod-db-admins' }).click();
  await carol.page.getByTestId('problem').filter({ hasText: 'a denial needs a comment' }).waitFor();
  assert.equal(await carol.page.evaluate(() => document.activeElement.dataset.testid), 'comment', 'focus on the comment');
  assert.ok(!carol.sent.some((s) => s.path.endsWith('/deny')), 'nothing sent');
  await carol.page.locator('[data-kind="request"]').getByLabel('Comment').fill('ok for INC-42');
  await carol.page.getByRole('button', { name: 'Approve bob@example.com for prod-db-admins' }).click();
  await carol.page.getByTestId('result').filter({ hasText: 'approved: access has started' }).waitFor();
  assert.deepEqual(carol.sent.find((s) => s.path === `/grants/${pending.id}/approve`).body, { comment: 'ok for INC-42' });
  // The extension: the same buttons and endpoint, named for the extension.
  await carol.page.getByRole('button', { name: 'Approve bob@example.com\'s extension of prod-db-admins' }).click();
  await carol.page.getByTestId('result').filter({ hasText: 'bob@example.com\'s extension of prod-db-admins is approved: access now lasts until' }).waitFor();
  const approved = carol.sent.find((s) => s.path === `/grants/${extension.id}/approve`);
  assert.deepEqual([approved.method, approved.body], ['POST', {}], 'approving the extension sends its POST');
  await carol.page.getByTestId('no-approvals').waitFor();

  // --- dave, an admin ----------------------------------------------------------------------
  const record = (action, at) => ({ id: `r-${action}`, grant_id: '3f9a1c2e-5b7d-4e8f-9a0b-000000000001', at, actor: 'arn:aws:iam::123456789012:user/alice', action, outcome: 'succeeded', integration: 'corp', user_id: 'u-bob', group_id: 'g-db' });
  const dave = await signedIn(browser, `${portal.url}#/admin`, 'dave@example.com', (method, p, params) => {
    if (method === 'GET' && p === '/me') return [200, { id: `${ISSUER}#sub-dave`, admin: true, users: [user('dave@example.com')] }];
    if (method === 'GET' && p === '/groups') return [200, { groups: GROUPS }];
    if (method === 'GET' && p === '/grants' && params.status === 'active') return [200, { grants: [grant({})], next: null }];
    if (method === 'GET' && p === '/integrations') {
      return [200, { integrations: [{ name: 'corp', sync: { integration: 'corp', state: 'succeeded', started_at: hours(-0.2), finished_at: hours(-0.19), users: 484, groups: 40, memberships: 964, written: 0, deleted: 0 } }], invalid: [{ secret: 'jit-access/old', reason: 'no token' }] }];
    }
    if (method === 'GET' && p === '/audit' && params.grant) return [200, { records: [record('created', hours(-1)), record('activated', hours(-1))], next: null }];
    return null;
  });
  await dave.page.getByRole('heading', { level: 1, name: 'Administration' }).waitFor();
  await dave.page.getByTestId('active-grant-row').first().waitFor();
  assert.equal(await dave.page.getByTestId('nav-admin').isVisible(), true);
  assert.equal(await dave.page.getByTestId('active-grant-row').count(), 1);
  assert.match(await dave.page.getByTestId('sync-row').textContent(), /corp.*succeeded.*484 users, 40 groups, 964 memberships/);
  assert.match(await dave.page.getByTestId('invalid-integrations').textContent(), /jit-access\/old: no token/);
  await dave.page.getByLabel('Grant id').fill('3f9a1c2e-5b7d-4e8f-9a0b-000000000001');
  await dave.page.getByRole('button', { name: 'Search' }).click();
  await dave.page.getByTestId('result').filter({ hasText: '2 audit records found' }).waitFor();
  assert.equal(await dave.page.getByTestId('audit-row').count(), 2);
  assert.deepEqual(dave.sent.find((s) => s.path === '/audit').params, { grant: '3f9a1c2e-5b7d-4e8f-9a0b-000000000001' });
  await checkPage(dave, 'administration');
  console.log('browser page tests: passed (screenshots in .local/browser/)');
}, async () => {
  await browser.close();
  stop(portal.child);
}, { browser, prefix: 'pages' });
