// The portal end to end in headless Chromium, nothing faked: e2e-stack runs moto's
// server, the JumpCloud simulator, the local OIDC issuer, and the local API (ID tokens checked as
// API Gateway's JWT authorizer does) in front of the real handlers. People sign in at the
// issuer's form, by authorization code + PKCE, and act through the portal's pages only:
// - alice (requester) asks for prod-db-admins and sees the request pending, with no way to
//   approve it herself;
// - bob (her manager) sees it awaiting him and approves it: alice is in the JumpCloud group;
// - alice sees her access active with time left, extends it (the expiry moves), gives it up
//   (she is out of the group);
// - erin (in no eligible group) is offered no group; dave (admin) sees the trail in the admin
//   page's audit search and the sync status.
// Each page is checked (one h1, labelled controls, no CSP violation or script error) and kept as
// a screenshot in .local/browser/e2e-*.png.
//
// Usage: node tests/browser/e2e.mjs (after `cargo build -p integration-tests --bin e2e-stack`;
// JIT_TEST_AWS_ENDPOINT names a running moto server, else the stack starts one from the venv).

import assert from 'node:assert/strict';
import path from 'node:path';
import { ARTIFACTS, checkPage, launchBrowser, navigate, newTab, run, startReady, stop, targetBinary } from './lib.mjs';

const stack = await startReady(targetBinary('e2e-stack'), [], process.env, /^e2e-stack: (\{.*\})$/);
const facts = JSON.parse(stack.match[1]);
const { people, directory } = facts;
const browser = await launchBrowser();

/** Whether alice is a member of prod-db-admins, asked of the simulator's JumpCloud API. */
async function requesterIsMember() {
  const response = await fetch(`${directory.url}/api/v2/usergroups/${directory.group_id}/members?limit=100`, {
    headers: { 'x-api-key': directory.api_key, accept: 'application/json' },
  });
  assert.equal(response.status, 200);
  return (await response.json()).some((c) => c.to.type === 'user' && c.to.id === directory.requester_id);
}

/** A fresh browser context signed in as `email` through the issuer's form. */
async function signIn(email, screenshot) {
  const tab = await newTab(browser);
  const { page } = tab;
  await page.goto(`${facts.api}/`);
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  if (screenshot) {
    // Time to interactive on the local stack: the page, its files and configuration through the
    // local API from the real grant handler (the page marks its first render done).
    const tti = await page.evaluate(() => Math.round(performance.getEntriesByName('portal-interactive')[0].startTime));
    console.log(`time to interactive on the local stack (local API, grant handler): ${tti} ms`);
  }
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Sign in to jit-portal' }).waitFor();
  if (screenshot) await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-issuer-sign-in.png'), fullPage: true });
  await page.getByRole('button', { name: email, exact: true }).click();
  await page.getByTestId('signed-in-as').filter({ hasText: `Signed in as ${email}` }).waitFor();
  assert.equal(new URL(page.url()).origin, facts.api, 'back at the portal');
  assert.equal(new URL(page.url()).search, '', 'the code and state are gone from the address');
  return tab;
}

/** The grant as the API has it, read with the tab's own ID token. */
async function apiGrant(tab, id) {
  return tab.page.evaluate(async ([api, grantId]) => {
    const { idToken } = JSON.parse(sessionStorage.getItem('jit.session'));
    const response = await fetch(`${api}/grants/${grantId}`, { headers: { authorization: `Bearer ${idToken}` } });
    return response.json();
  }, [facts.api, id]);
}

await run(async () => {
  assert.equal(await requesterIsMember(), false, 'no standing access to begin with');

  // --- alice asks ------------------------------------------------------------------------
  const alice = await signIn(people.requester, true);
  let page = alice.page;
  await page.getByRole('heading', { level: 1, name: 'Request access' }).waitFor();
  await page.getByLabel(facts.group).check();
  const durations = await page.getByLabel('Duration').locator('option').allTextContents();
  assert.equal(durations.at(-1), '2 hours', 'the picker stops at the rule\'s maximum');
  assert.match(await page.getByText(/ticket reference that matches/).textContent(), /\^INC-\[0-9\]\+\$/);
  await page.getByLabel('Duration').selectOption('1h');
  await page.getByLabel('Reason').fill('INC-4711 restore the orders table');
  await checkPage(alice, 'e2e-request-access');
  await page.getByRole('button', { name: 'Request access' }).click();
  await page.getByTestId('result').filter({ hasText: `awaits approval by ${people.manager}` }).waitFor();
  assert.equal(await requesterIsMember(), false, 'nothing in JumpCloud while pending');

  await navigate(page, 'My access', 'My access');
  const pending = page.getByTestId('grant-card').and(page.locator('[data-status="pending_approval"]'));
  await pending.waitFor();
  assert.match(await pending.textContent(), new RegExp(facts.group));
  await checkPage(alice, 'e2e-my-access-pending');

  // No self-approval: her own request is not hers to decide, and no button offers it.
  await navigate(page, 'Approvals', 'Approvals');
  await page.getByTestId('no-approvals').waitFor();
  assert.equal(await page.getByRole('button', { name: /^(Approve|Deny) / }).count(), 0, 'no approve or deny button');
  await checkPage(alice, 'e2e-approvals-requester');

  // --- bob, her manager, approves --------------------------------------------------------
  const bob = await signIn(people.manager);
  await navigate(bob.page, 'Approvals', 'Approvals');
  const card = bob.page.getByTestId('approval-card');
  await card.waitFor();
  assert.equal(await card.count(), 1);
  assert.match(await card.textContent(), /INC-4711 restore the orders table/);
  await checkPage(bob, 'e2e-approvals-manager');
  await bob.page.getByTestId('comment').fill('ok for INC-4711');
  await bob.page.getByRole('button', { name: `Approve ${people.requester} for ${facts.group}` }).click();
  await bob.page.getByTestId('result').filter({ hasText: 'approved: access has started' }).waitFor();
  await bob.page.getByTestId('no-approvals').waitFor();
  assert.equal(await requesterIsMember(), true, 'alice is in the JumpCloud group once approved');

  // --- alice: active, time left, extend, give up -----------------------------------------
  await navigate(page, 'Request access', 'Request access');
  await navigate(page, 'My access', 'My access');
  const active = page.getByTestId('grant-card').and(page.locator('[data-status="active"]'));
  await active.waitFor();
  assert.match(await active.getByTestId('time-left').textContent(), /^(59 minutes|1 hour) left$/);
  const id = await active.getAttribute('data-grant-id');
  assert.ok(id, 'the card names its grant');
  const before = await apiGrant(alice, id);
  assert.equal(before.status, 'active');
  await checkPage(alice, 'e2e-my-access-active');

  await active.getByRole('button', { name: `Extend access to ${facts.group}` }).first().click();
  await page.getByLabel('Extend by').selectOption('30m');
  await page.getByTestId('extend-reason').fill('INC-4711 still restoring');
  await checkPage(alice, 'e2e-extend');
  await page.getByRole('button', { name: `Extend access to ${facts.group}` }).last().click();
  await page.getByTestId('result').filter({ hasText: 'now lasts until' }).waitFor();
  const extended = await apiGrant(alice, id);
  assert.equal(Date.parse(extended.expires_at) - Date.parse(before.expires_at), 30 * 60e3, 'the expiry moved by 30 minutes');
  assert.match(await page.getByTestId('time-left').first().textContent(), /^1 hour (29|30) minutes left$/);

  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: `Give up access to ${facts.group}` }).click();
  await page.getByTestId('result').filter({ hasText: `You gave up your access to ${facts.group}` }).waitFor();
  await page.getByTestId('no-active').waitFor();
  assert.equal((await apiGrant(alice, id)).status, 'revoked');
  assert.equal(await requesterIsMember(), false, 'out of the JumpCloud group once given up');

  // --- erin is eligible for nothing ------------------------------------------------------
  const erin = await signIn(people.ineligible);
  await erin.page.getByRole('heading', { level: 1, name: 'Request access' }).waitFor();
  await erin.page.getByTestId('no-groups').waitFor();
  assert.equal(await erin.page.getByLabel(facts.group).count(), 0, `${facts.group} is not offered to erin`);
  assert.equal(await erin.page.getByTestId('nav-admin').isHidden(), true, 'no admin page for erin');
  await checkPage(erin, 'e2e-request-ineligible');

  // --- dave, an admin: the trail and the sync status --------------------------------------
  const dave = await signIn(people.admin);
  await navigate(dave.page, 'Administration', 'Administration');
  await dave.page.getByTestId('sync-row').filter({ hasText: 'corp' }).waitFor();
  await dave.page.getByLabel('Grant id').fill(id);
  await dave.page.getByRole('button', { name: 'Search' }).click();
  await dave.page.getByTestId('result').filter({ hasText: 'audit records found' }).waitFor();
  const actions = await dave.page.getByTestId('audit-row').allTextContents();
  for (const action of ['created', 'approved', 'activated', 'extended', 'revoked']) {
    assert.ok(actions.some((row) => row.includes(action)), `the trail has ${action}: ${actions.join(' | ')}`);
  }
  await checkPage(dave, 'e2e-administration');
  console.log('browser end-to-end test: passed (screenshots in .local/browser/e2e-*.png)');
}, async () => {
  await browser.close();
  stop(stack.child);
}, { browser, prefix: 'e2e' });
