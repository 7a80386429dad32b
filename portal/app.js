// The access portal: one ES module, no dependency, nothing loaded from elsewhere.
//
// - Sign-in: OpenID Connect authorization code with PKCE (S256) against the issuer named by
//   portal/config.json, as a public client; the ID token is the API's bearer token (API Gateway's
//   JWT authorizer checks its signature, issuer, audience and expiry; this page checks only the
//   claims that decide what to show). It is kept in sessionStorage: see the README, "Portal".
// - Pages: request access, my access, approvals, administration (admins), chosen by the URL's
//   fragment (#/request, #/mine, #/approvals, #/admin), all over the product's own HTTP API.
// - The page's Content-Security-Policy forbids inline script and style and requires Trusted
//   Types: the DOM is built with createElement and textContent only, never from HTML text.

const SESSION = 'jit.session';
const PENDING = 'jit.signin';
const DISCOVERY = 'jit.discovery';
const PAGES = {
  request: { title: 'Request access', render: renderRequest },
  mine: { title: 'My access', render: renderMine },
  approvals: { title: 'Approvals', render: renderApprovals },
  admin: { title: 'Administration', render: renderAdmin, admin: true },
};

const state = { config: null, session: null, me: null, groups: null, renderSeq: 0, expiryTimer: 0, ticker: 0 };

// ---------------------------------------------------------------------------------------------
// DOM helpers

/** An element: h('button', {type: 'button', onclick: f, 'data-testid': 'x'}, 'text', child, [more]). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'value') el.value = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const hidden = (text) => h('span', { class: 'visually-hidden' }, text);
const byId = (id) => document.getElementById(id);
let uid = 0;
const nextId = (prefix) => `${prefix}-${++uid}`;

function time(iso) {
  if (!iso) return '—';
  const at = new Date(iso);
  const text = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' }).format(at);
  return h('time', { datetime: iso }, text);
}

// ---------------------------------------------------------------------------------------------
// Durations: the API's forms (2h, 90m, 1h30m, 1d) and their words

const UNITS = [['d', 86400, 'day'], ['h', 3600, 'hour'], ['m', 60, 'minute'], ['s', 1, 'second']];

function parseDuration(text) {
  const match = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(String(text || '').trim());
  if (!match || !match[0]) return null;
  return UNITS.reduce((sum, [, size], i) => sum + Number(match[i + 1] || 0) * size, 0);
}

function apiDuration(seconds) {
  let rest = seconds;
  let out = '';
  for (const [unit, size] of UNITS) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out || '0s';
}

function words(seconds) {
  let rest = Math.max(0, Math.round(seconds));
  const parts = [];
  for (const [, size, name] of UNITS) {
    if (rest >= size && parts.length < 2) {
      const n = Math.floor(rest / size);
      parts.push(`${n} ${name}${n === 1 ? '' : 's'}`);
      rest %= size;
    }
  }
  return parts.join(' ') || '0 minutes';
}

function timeLeft(iso) {
  const ms = new Date(iso).getTime() - Date.now();
  if (ms <= 0) return 'ended';
  const minutes = Math.ceil(ms / 60000);
  return `${words(minutes * 60)} left`;
}

const PRESETS = [15 * 60, 30 * 60, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400];

/** Choices from the minimum to `max` (the rule's maximum, or the deployment's). */
function durationChoices(max) {
  const min = parseDuration(state.config.min_duration) || 60;
  const top = max || parseDuration(state.config.max_duration) || 12 * 3600;
  const choices = PRESETS.filter((s) => s >= min && s <= top);
  if (!choices.includes(top)) choices.push(top);
  return choices;
}

function durationSelect(id, max, describedBy) {
  const choices = durationChoices(max);
  const preferred = choices.includes(3600) ? 3600 : choices[0];
  return h('select', { id, name: 'duration', 'aria-describedby': describedBy, 'data-testid': 'duration' },
    choices.map((s) => h('option', { value: apiDuration(s), selected: s === preferred }, words(s))));
}

// ---------------------------------------------------------------------------------------------
// Messages: one live region for results, one alert for problems

function showResult(...content) {
  byId('problem').replaceChildren();
  byId('result').replaceChildren(h('p', null, ...content));
}

function showProblem(error) {
  byId('result').replaceChildren();
  const problem = byId('problem');
  if (error instanceof ApiError) {
    problem.replaceChildren(h('p', null, h('strong', null, `${error.title}: `), error.detail));
  } else {
    problem.replaceChildren(h('p', null, String(error && error.message ? error.message : error)));
  }
}

function clearMessages() {
  byId('problem').replaceChildren();
  byId('result').replaceChildren();
}

// ---------------------------------------------------------------------------------------------
// Sign-in: OIDC authorization code + PKCE

const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const randomString = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));

async function pkceChallenge(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return b64url(new Uint8Array(digest));
}

function redirectUri() {
  return location.origin + location.pathname;
}

async function discovery() {
  const cached = JSON.parse(sessionStorage.getItem(DISCOVERY) || 'null');
  if (cached && cached.issuer === state.config.issuer) return cached;
  const url = state.config.issuer.replace(/\/$/, '') + '/.well-known/openid-configuration';
  let response;
  try {
    response = await fetch(url, { credentials: 'omit', cache: 'no-store' });
  } catch (e) {
    throw new Error(`The sign-in service (${state.config.issuer}) cannot be reached.`);
  }
  if (!response.ok) throw new Error(`The sign-in service answered ${response.status} for its discovery document.`);
  const doc = await response.json();
  if (doc.issuer !== state.config.issuer) {
    throw new Error(`The sign-in service calls itself ${doc.issuer}, not ${state.config.issuer}: `
      + 'set OIDC_ISSUER (JwtIssuer) to exactly the issuer its discovery document names.');
  }
  sessionStorage.setItem(DISCOVERY, JSON.stringify(doc));
  return doc;
}

async function signIn() {
  const doc = await discovery();
  const pending = {
    state: randomString(24), nonce: randomString(24), verifier: randomString(48),
    hash: location.hash.startsWith('#/') ? location.hash : '',
  };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const url = new URL(doc.authorization_endpoint);
  const params = {
    response_type: 'code', client_id: state.config.client_id, redirect_uri: redirectUri(),
    scope: state.config.scopes || 'openid email profile', state: pending.state, nonce: pending.nonce,
    code_challenge: await pkceChallenge(pending.verifier), code_challenge_method: 'S256',
  };
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  location.assign(url.href);
}

function decodeJwt(token) {
  const part = String(token || '').split('.')[1];
  if (!part) throw new Error('The sign-in service returned no ID token.');
  const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** What the page relies on; the API's authorizer verifies the signature and checks these again. */
function checkClaims(claims, nonce) {
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (claims.iss !== state.config.issuer) throw new Error(`The ID token comes from ${claims.iss}, not from ${state.config.issuer}.`);
  if (!audiences.includes(state.config.client_id)) throw new Error('The ID token is not meant for this portal (aud).');
  if (audiences.length > 1 && claims.azp && claims.azp !== state.config.client_id) throw new Error('The ID token was issued to another client (azp).');
  if (claims.nonce !== nonce) throw new Error('The ID token does not answer this sign-in (nonce): sign in again.');
  if (!(claims.exp * 1000 > Date.now())) throw new Error('The ID token has expired already: check this computer\'s clock, then sign in again.');
}

async function completeSignIn(params) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || 'null');
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', location.pathname + ((pending && pending.hash) || ''));
  if (params.get('error')) {
    throw new Error(`Sign-in failed: ${params.get('error_description') || params.get('error')}.`);
  }
  if (!pending || params.get('state') !== pending.state) {
    throw new Error('This sign-in answer does not belong to a sign-in started here (state): sign in again.');
  }
  const doc = await discovery();
  const response = await fetch(doc.token_endpoint, {
    method: 'POST',
    credentials: 'omit',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: params.get('code') || '', redirect_uri: redirectUri(),
      client_id: state.config.client_id, code_verifier: pending.verifier,
    }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(`The sign-in service refused the code: ${body.error_description || body.error || response.status}.`);
  }
  const claims = decodeJwt(body.id_token);
  checkClaims(claims, pending.nonce);
  saveSession({ idToken: body.id_token, claims });
}

function saveSession(session) {
  sessionStorage.setItem(SESSION, JSON.stringify(session));
  state.session = session;
}

function loadSession() {
  const session = JSON.parse(sessionStorage.getItem(SESSION) || 'null');
  if (!session || !session.claims || !(session.claims.exp * 1000 > Date.now() + 5000)) {
    sessionStorage.removeItem(SESSION);
    return null;
  }
  return session;
}

/** Signs out here (the issuer's own session is left alone), saying why. */
function endSession(reason) {
  sessionStorage.removeItem(SESSION);
  state.session = null;
  state.me = null;
  state.groups = null;
  clearTimeout(state.expiryTimer);
  renderShell();
  route({ focus: true });
  if (reason) showResult(reason);
}

function watchExpiry() {
  clearTimeout(state.expiryTimer);
  if (!state.session) return;
  const ms = Math.min(state.session.claims.exp * 1000 - Date.now(), 2 ** 31 - 1);
  state.expiryTimer = setTimeout(() => endSession('Your sign-in expired: sign in again to go on.'), Math.max(ms, 0));
}

// ---------------------------------------------------------------------------------------------
// The API: JSON in and out, problem+json errors

class ApiError extends Error {
  constructor(status, body) {
    const detail = (body && (body.detail || body.message)) || `The API answered ${status}.`;
    super(detail);
    this.status = status;
    this.title = (body && body.title) || `Error ${status}`;
    this.detail = detail;
  }
}

async function api(method, path, body, headers) {
  if (!state.session || !(state.session.claims.exp * 1000 > Date.now())) {
    endSession('Your sign-in expired: sign in again to go on.');
    throw new Error('Not signed in.');
  }
  const init = {
    method,
    credentials: 'omit',
    cache: 'no-store',
    headers: { accept: 'application/json', authorization: `Bearer ${state.session.idToken}`, ...(headers || {}) },
  };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new Error('The API cannot be reached: check your connection and try again.');
  }
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json().catch(() => null) : null;
  if (response.status === 401) {
    const why = data && (data.detail || data.message);
    endSession(`The API did not accept your sign-in${why ? ` (${why})` : ''}: sign in again.`);
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { status: response.status, data };
}

const query = (params) => {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) search.set(key, value);
  const text = search.toString();
  return text ? `?${text}` : '';
};

/** Runs an action from a form or button: busy while it runs, its problem shown. */
async function act(control, work) {
  const busy = control.closest('form') || control;
  busy.setAttribute('aria-busy', 'true');
  const buttons = busy.querySelectorAll ? [...busy.querySelectorAll('button'), control] : [control];
  buttons.forEach((b) => { if (b.tagName === 'BUTTON') b.disabled = true; });
  try {
    await work();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) showProblem(error);
  } finally {
    busy.removeAttribute('aria-busy');
    buttons.forEach((b) => { if (b.tagName === 'BUTTON') b.disabled = false; });
  }
}

// ---------------------------------------------------------------------------------------------
// Shell and navigation

function currentPage() {
  const match = /^#\/([a-z]+)/.exec(location.hash);
  return match && PAGES[match[1]] ? match[1] : 'request';
}

function renderShell() {
  const signedIn = Boolean(state.session);
  byId('nav').hidden = !signedIn;
  byId('nav-admin-item').hidden = !(state.me && state.me.admin);
  const account = byId('account');
  if (!signedIn) {
    account.replaceChildren();
    return;
  }
  const who = state.session.claims.email || state.session.claims.preferred_username || state.session.claims.sub;
  account.replaceChildren(
    h('span', { 'data-testid': 'signed-in-as' }, 'Signed in as ', h('strong', null, who)),
    h('button', { type: 'button', class: 'secondary', 'data-testid': 'sign-out', onclick: () => endSession('You are signed out.') }, 'Sign out'),
  );
}

function pageHeading(text) {
  return h('h1', { tabindex: '-1' }, text);
}

/** Renders the page the fragment names; after a navigation, focus goes to its heading. */
async function route({ focus } = { focus: true }) {
  const seq = ++state.renderSeq;
  clearInterval(state.ticker);
  const name = currentPage();
  const page = PAGES[name];
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.getAttribute('href') === `#/${name}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const container = byId('page');
  let content;
  if (!state.session) {
    document.title = 'Sign in · Access requests';
    content = renderSignIn();
  } else if (page.admin && !(state.me && state.me.admin)) {
    document.title = `${page.title} · Access requests`;
    content = [pageHeading(page.title), h('p', null, 'Only admins see this page.')];
  } else {
    document.title = `${page.title} · Access requests`;
    container.replaceChildren(pageHeading(page.title), h('p', { 'aria-busy': 'true' }, 'Loading…'));
    try {
      content = await page.render();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
      content = [pageHeading(page.title), h('p', null, 'This page could not be loaded.')];
      if (seq === state.renderSeq) showProblem(error);
    }
  }
  if (seq !== state.renderSeq) return;
  container.replaceChildren(...[content].flat(Infinity).filter((node) => node !== null && node !== undefined && node !== false));
  if (focus) {
    const heading = container.querySelector('h1');
    if (heading) heading.focus();
  }
}

function renderSignIn() {
  const configured = state.config && state.config.issuer && state.config.client_id;
  const button = h('button', { type: 'button', 'data-testid': 'sign-in', disabled: !configured }, 'Sign in');
  button.addEventListener('click', () => act(button, signIn));
  return h('div', { class: 'signin' },
    pageHeading('Sign in'),
    h('p', null, 'Ask for temporary membership of a group, follow your requests, approve others\' and give access back when you are done.'),
    configured
      ? h('p', null, 'You sign in with your company account.')
      : h('p', { 'data-testid': 'not-configured' }, 'Sign-in is not set up for this deployment: it needs ApiAuthorization JWT with JwtIssuer and JwtAudience (OIDC_ISSUER and OIDC_CLIENT_ID).'),
    button);
}

// ---------------------------------------------------------------------------------------------
// Data shared by the pages

async function loadGroups() {
  if (!state.groups) state.groups = (await api('GET', 'groups')).data.groups || [];
  return state.groups;
}

function groupOf(grant) {
  return (state.groups || []).find((g) => g.integration === grant.integration && g.id === grant.group.id);
}

function severalIntegrations(items) {
  return new Set(items.map((i) => i.integration)).size > 1;
}

/** The rule's terms of a group, in words. */
function ruleTerms(group) {
  const terms = [];
  if (group.max_duration) terms.push(`up to ${words(parseDuration(group.max_duration))}`);
  if (group.approval_required === true) {
    const auto = group.auto_approve_up_to && parseDuration(group.auto_approve_up_to);
    terms.push(auto ? `approval needed beyond ${words(auto)}` : 'approval needed');
  } else if (group.approval_required === false) {
    terms.push('no approval needed');
  }
  if (group.ticket) terms.push('a ticket reference in the reason');
  if (group.break_glass) terms.push('break glass allowed');
  if (!group.max_duration && group.approval_required === undefined) terms.push('as an admin: no rule applies');
  return terms.join(' · ');
}

// ---------------------------------------------------------------------------------------------
// Request access

async function renderRequest() {
  const groups = await loadGroups();
  const heading = pageHeading('Request access');
  if (!groups.length) {
    return [heading, h('p', { class: 'empty', 'data-testid': 'no-groups' },
      'There is no group you may request. The access policy decides who may request what: ask the team that runs it.')];
  }
  const several = severalIntegrations(groups);
  const durationId = nextId('duration');
  const durationHint = h('p', { class: 'hint', id: nextId('hint') });
  const reasonHint = h('p', { class: 'hint', id: nextId('hint') });
  const reason = h('textarea', { id: nextId('reason'), name: 'reason', required: true, maxlength: 1000, 'aria-describedby': reasonHint.id, 'data-testid': 'reason' });
  const breakGlassHint = h('p', { class: 'hint', id: nextId('hint') }, 'Only in an emergency: access starts at once, and the use of break glass is recorded and announced.');
  const breakGlass = h('input', { type: 'checkbox', id: nextId('break-glass'), name: 'break_glass', 'aria-describedby': breakGlassHint.id, 'data-testid': 'break-glass' });
  const breakGlassField = h('div', { class: 'field', hidden: true },
    h('div', { class: 'check' }, breakGlass, h('label', { for: breakGlass.id }, 'Break glass: skip approval')),
    breakGlassHint);
  let select = durationSelect(durationId, null, durationHint.id);
  const durationField = h('div', { class: 'field' }, h('label', { for: durationId }, 'Duration'), durationHint, select);

  const radios = groups.map((group, i) => {
    const id = nextId('group');
    const terms = h('p', { class: 'hint', id: `${id}-terms` }, ruleTerms(group));
    const input = h('input', { type: 'radio', name: 'group', id, value: String(i), required: true, 'aria-describedby': terms.id, 'data-testid': 'group-option', 'data-group': group.name });
    input.addEventListener('change', () => chosen(group));
    const name = several ? `${group.name} (${group.integration})` : group.name;
    return h('li', { class: 'choice' }, input, h('label', { for: id }, name), terms,
      group.description ? h('p', { class: 'hint' }, group.description) : null);
  });

  const generalHint = 'Say why you need it: approvers and the audit trail read this.';
  function chosen(group) {
    const max = parseDuration(group.max_duration);
    const fresh = durationSelect(durationId, max, durationHint.id);
    select.replaceWith(fresh);
    select = fresh;
    durationHint.textContent = `At most ${words(max || parseDuration(state.config.max_duration))} for ${group.name}.`
      + (group.auto_approve_up_to ? ` Up to ${words(parseDuration(group.auto_approve_up_to))} is approved at once.` : '');
    reasonHint.textContent = group.ticket
      ? `Say why, including a ticket reference that matches ${group.ticket}.`
      : generalHint;
    breakGlassField.hidden = !group.break_glass;
    if (!group.break_glass) breakGlass.checked = false;
  }
  reasonHint.textContent = generalHint;

  const submit = h('button', { type: 'submit', 'data-testid': 'request-submit' }, 'Request access');
  const form = h('form', { 'data-testid': 'request-form', 'aria-labelledby': 'request-legend', novalidate: true },
    h('fieldset', null, h('legend', { id: 'request-legend' }, 'Group'), h('ul', { class: 'choices' }, radios)),
    durationField,
    h('div', { class: 'field' }, h('label', { for: reason.id }, 'Reason'), reasonHint, reason),
    breakGlassField,
    submit);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const picked = form.querySelector('input[name="group"]:checked');
    if (!picked) {
      showProblem(new Error('Choose a group first.'));
      form.querySelector('input[name="group"]').focus();
      return;
    }
    if (!reason.value.trim()) {
      reason.setAttribute('aria-invalid', 'true');
      showProblem(new Error('Say why you need access: the reason is required.'));
      reason.focus();
      return;
    }
    reason.removeAttribute('aria-invalid');
    const group = groups[Number(picked.value)];
    const request = {
      group: group.id, integration: group.integration, duration: select.value, reason: reason.value.trim(),
    };
    if (breakGlass.checked) request.break_glass = true;
    act(submit, async () => {
      const { status, data } = await api('POST', 'grants', request, { 'idempotency-key': crypto.randomUUID() });
      form.reset();
      durationHint.textContent = '';
      reasonHint.textContent = generalHint;
      breakGlassField.hidden = true;
      if (status === 202) {
        const approvers = (data.approvers || []).join(', ') || 'its approvers';
        showResult(`Your request for ${group.name} awaits approval by ${approvers}`
          + (data.approvals_required > 1 ? ` (${data.approvals_required} needed)` : '') + '. ',
          h('a', { href: '#/mine' }, 'See it in My access'), '.');
      } else {
        showResult(`You have access to ${group.name} until `, time(data.expires_at), ` (${words(parseDuration(data.duration))}). `,
          h('a', { href: '#/mine' }, 'See it in My access'), '.');
      }
    });
  });
  return [heading, h('p', null, 'The groups you may request, with their rules.'), form];
}

// ---------------------------------------------------------------------------------------------
// My access

async function myGrants(status) {
  const users = (state.me && state.me.users) || [];
  const lists = await Promise.all(users.map((u) =>
    api('GET', `grants${query({ user: u.email, integration: u.integration, status, limit: '100' })}`)));
  return lists.flatMap((l) => l.data.grants || []);
}

async function renderMine() {
  await loadGroups().catch(() => []);
  const [active, pending] = await Promise.all([myGrants('active'), myGrants('pending_approval')]);
  const heading = pageHeading('My access');
  const activeList = h('ul', { class: 'cards', 'data-testid': 'active-grants' }, active.map(activeCard));
  const pendingList = h('ul', { class: 'cards', 'data-testid': 'pending-requests' }, pending.map(pendingCard));
  state.ticker = setInterval(() => {
    for (const el of document.querySelectorAll('[data-expires]')) el.textContent = timeLeft(el.getAttribute('data-expires'));
  }, 30000);
  return [heading,
    h('h2', null, 'Active'),
    active.length ? activeList : h('p', { class: 'empty', 'data-testid': 'no-active' }, 'You hold no temporary access now.'),
    h('h2', null, 'Awaiting approval'),
    pending.length ? pendingList : h('p', { class: 'empty', 'data-testid': 'no-pending' }, 'No request of yours awaits approval.')];
}

function details(pairs) {
  return h('dl', null, pairs.filter(Boolean).map(([term, value]) => [h('dt', null, term), h('dd', null, value)]));
}

function cardHeading(grant, id) {
  return h('h3', { id }, grant.group.name, ' ', h('span', { class: `badge ${grant.status === 'active' ? 'active' : 'pending'}` }, grant.status.replace(/_/g, ' ')));
}

function activeCard(grant) {
  const headingId = nextId('grant');
  const card = h('li', { class: 'card', 'data-testid': 'grant-card', 'data-grant-id': grant.id, 'data-status': grant.status, 'data-group': grant.group.name, 'aria-labelledby': headingId });
  const ext = grant.pending_extension;
  const extendButton = h('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false', 'data-testid': 'extend' }, 'Extend', hidden(` access to ${grant.group.name}`));
  const giveUp = h('button', { type: 'button', class: 'danger', 'data-testid': 'give-up' }, 'Give up', hidden(` access to ${grant.group.name}`));
  const slot = h('div');
  extendButton.addEventListener('click', () => {
    const open = extendButton.getAttribute('aria-expanded') === 'true';
    extendButton.setAttribute('aria-expanded', String(!open));
    slot.replaceChildren(...(open ? [] : [extendForm(grant, extendButton)]));
    if (!open) slot.querySelector('select').focus();
  });
  giveUp.addEventListener('click', () => {
    if (!confirm(`Give up your access to ${grant.group.name} now?`)) return;
    act(giveUp, async () => {
      await api('DELETE', `grants/${encodeURIComponent(grant.id)}`);
      await route({ focus: false });
      showResult(`You gave up your access to ${grant.group.name}.`);
      byId('page').querySelector('h1').focus();
    });
  });
  card.append(
    cardHeading(grant, headingId),
    details([
      ['Time left', h('span', { 'data-expires': grant.expires_at, 'data-testid': 'time-left' }, timeLeft(grant.expires_at))],
      ['Until', time(grant.expires_at)],
      ['Since', time(grant.granted_at)],
      severalIntegrations(state.me.users || []) && ['Integration', grant.integration],
      ['Reason', grant.reason],
      ext && ['Extension', `${words(parseDuration(ext.duration))} more awaits approval by ${ext.approvers.join(', ')}`],
    ]),
    h('div', { class: 'actions' }, extendButton, giveUp),
    slot);
  return card;
}

function extendForm(grant, opener) {
  const group = groupOf(grant);
  const durationId = nextId('extend-duration');
  const hint = h('p', { class: 'hint', id: nextId('hint') }, group && group.ticket
    ? `Include a ticket reference that matches ${group.ticket}.` : 'Say why you need more time.');
  const reason = h('textarea', { id: nextId('extend-reason'), required: true, maxlength: 1000, 'aria-describedby': hint.id, 'data-testid': 'extend-reason' });
  const select = durationSelect(durationId, group && parseDuration(group.max_duration));
  const submit = h('button', { type: 'submit', 'data-testid': 'extend-submit' }, 'Extend', hidden(` access to ${grant.group.name}`));
  const form = h('form', { class: 'inline-form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: durationId }, 'Extend by'), select),
    h('div', { class: 'field' }, h('label', { for: reason.id }, 'Reason'), hint, reason),
    h('div', { class: 'actions' }, submit,
      h('button', { type: 'button', class: 'secondary', onclick: () => { opener.click(); opener.focus(); } }, 'Cancel')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!reason.value.trim()) {
      reason.setAttribute('aria-invalid', 'true');
      showProblem(new Error('Say why you need more time: the reason is required.'));
      reason.focus();
      return;
    }
    act(submit, async () => {
      const { status, data } = await api('POST', `grants/${encodeURIComponent(grant.id)}/extend`, { duration: select.value, reason: reason.value.trim() });
      await route({ focus: false });
      if (status === 202) {
        showResult(`Your extension of ${grant.group.name} awaits approval by ${(data.pending_extension.approvers || []).join(', ')}.`);
      } else {
        showResult(`Your access to ${grant.group.name} now lasts until `, time(data.expires_at), '.');
      }
      byId('page').querySelector('h1').focus();
    });
  });
  return form;
}

function pendingCard(grant) {
  const headingId = nextId('grant');
  const cancel = h('button', { type: 'button', class: 'danger', 'data-testid': 'cancel-request' }, 'Cancel request', hidden(` for ${grant.group.name}`));
  cancel.addEventListener('click', () => {
    if (!confirm(`Cancel your request for ${grant.group.name}?`)) return;
    act(cancel, async () => {
      await api('DELETE', `grants/${encodeURIComponent(grant.id)}`);
      await route({ focus: false });
      showResult(`Your request for ${grant.group.name} is cancelled.`);
      byId('page').querySelector('h1').focus();
    });
  });
  return h('li', { class: 'card', 'data-testid': 'grant-card', 'data-grant-id': grant.id, 'data-status': grant.status, 'data-group': grant.group.name, 'aria-labelledby': headingId },
    cardHeading(grant, headingId),
    details([
      ['Duration', words(parseDuration(grant.duration))],
      ['Requested', time(grant.requested_at)],
      ['Approvers', (grant.approvers || []).join(', ') || '—'],
      ['Approvals', `${(grant.approvals || []).length} of ${grant.approvals_required}`],
      ['Lapses', time(grant.request_expires_at)],
      ['Reason', grant.reason],
    ]),
    h('div', { class: 'actions' }, cancel));
}

// ---------------------------------------------------------------------------------------------
// Approvals

// Pages of what awaits the caller, followed to the end (a bounded number): the requests come
// first, then the active grants whose extension awaits them.
const APPROVAL_PAGES = 10;

async function renderApprovals() {
  const requests = [];
  let next = null;
  for (let page = 0; page < APPROVAL_PAGES && (page === 0 || next); page += 1) {
    const { data } = await api('GET', `grants${query({ awaiting: 'me', limit: '100', next })}`);
    requests.push(...(data.grants || []));
    next = data.next;
  }
  const heading = pageHeading('Approvals');
  if (!requests.length) {
    return [heading, h('p', { class: 'empty', 'data-testid': 'no-approvals' }, 'Nothing awaits your approval.')];
  }
  return [heading, h('p', null, 'Requests and extensions you may approve or deny. A denial needs a comment.'),
    h('ul', { class: 'cards', 'data-testid': 'approval-list' }, requests.map(approvalCard))];
}

/** An extension awaiting approval: an active grant with a `pending_extension`. */
const extensionOf = (grant) => (grant.status === 'active' && grant.pending_extension) || null;

function approvalCard(grant) {
  const headingId = nextId('request');
  const who = grant.user.email;
  const ext = extensionOf(grant);
  // What is decided, as the buttons' names and the outcome say it.
  const subject = ext ? `${who}'s extension of ${grant.group.name}` : `${who} for ${grant.group.name}`;
  const comment = h('textarea', { id: nextId('comment'), maxlength: 1000, 'data-testid': 'comment' });
  const approve = h('button', { type: 'button', 'data-testid': 'approve' }, 'Approve', hidden(` ${subject}`));
  const deny = h('button', { type: 'button', class: 'danger', 'data-testid': 'deny' }, 'Deny', hidden(` ${subject}`));
  const decided = ext ? ext.approvals || [] : grant.approvals || [];
  const required = ext ? ext.approvals_required : grant.approvals_required;
  const tally = ['Approvals', `${decided.length} of ${required}`
    + (decided.length ? ` (${decided.map((a) => a.by).join(', ')})` : '')];
  const facts = ext
    ? [['Asks', `extend by ${words(parseDuration(ext.duration))}`],
      ['Reason', ext.reason],
      ['Expires now', time(grant.expires_at)],
      ['Asked', time(ext.at)],
      tally,
      ['Lapses', time(ext.request_expires_at)]]
    : [['Duration', words(parseDuration(grant.duration))],
      ['Reason', grant.reason],
      ['Requested by', (grant.requester && grant.requester.email) || grant.requested_by],
      ['Requested', time(grant.requested_at)],
      tally,
      ['Lapses', time(grant.request_expires_at)]];
  const card = h('li', { class: 'card', 'data-testid': 'approval-card', 'data-kind': ext ? 'extension' : 'request', 'data-group': grant.group.name, 'aria-labelledby': headingId },
    h('h2', { id: headingId }, `${who}: ${grant.group.name}`,
      ...(ext ? [' ', h('span', { class: 'badge pending' }, 'extension')] : [])),
    details(facts),
    h('form', { novalidate: true, onsubmit: (e) => e.preventDefault() },
      h('div', { class: 'field' }, h('label', { for: comment.id }, 'Comment'), comment),
      h('div', { class: 'actions' }, approve, deny)));
  const decide = (verdict, button) => act(button, async () => {
    const text = comment.value.trim();
    if (verdict === 'deny' && !text) {
      comment.setAttribute('aria-invalid', 'true');
      comment.focus();
      throw new Error('Say why you deny it: a denial needs a comment.');
    }
    const { data } = await api('POST', `grants/${encodeURIComponent(grant.id)}/${verdict}`, text ? { comment: text } : {});
    const what = ext ? `${who}'s extension of ${grant.group.name}` : `${who}'s request for ${grant.group.name}`;
    let outcome = ['approved; it needs more approvals'];
    if (verdict === 'deny') outcome = ['denied'];
    else if (ext && !data.pending_extension) outcome = ['approved: access now lasts until ', time(data.expires_at)];
    else if (!ext && data.status === 'active') outcome = ['approved: access has started'];
    const next = card.nextElementSibling || card.previousElementSibling;
    card.remove();
    showResult(`${what} is `, ...outcome, '.');
    const target = next ? next.querySelector('h2') : null;
    if (target) {
      target.setAttribute('tabindex', '-1');
      target.focus();
    } else {
      byId('page').replaceChildren(pageHeading('Approvals'), h('p', { class: 'empty', 'data-testid': 'no-approvals' }, 'Nothing awaits your approval.'));
      byId('page').querySelector('h1').focus();
    }
  });
  approve.addEventListener('click', () => decide('approve', approve));
  deny.addEventListener('click', () => decide('deny', deny));
  return card;
}

// ---------------------------------------------------------------------------------------------
// Administration: every active grant, sync status, the audit trail

async function renderAdmin() {
  const heading = pageHeading('Administration');
  const [grants, integrations] = await Promise.all([
    api('GET', `grants${query({ status: 'active', limit: '100' })}`),
    api('GET', 'integrations'),
  ]);
  return [heading,
    h('h2', { id: 'active-heading', tabindex: '-1' }, 'Active grants'),
    activeGrantsTable(grants.data),
    h('h2', { id: 'sync-heading' }, 'Sync status'),
    syncTable(integrations.data),
    h('h2', { id: 'audit-heading' }, 'Audit trail'),
    auditSearch()];
}

function table(testid, caption, columns, rows) {
  return h('div', { class: 'table-wrap' }, h('table', { 'data-testid': testid },
    h('caption', null, caption),
    h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, rows)));
}

function activeGrantsTable(page) {
  const row = (g) => {
    const end = h('button', { type: 'button', class: 'danger', 'data-testid': 'end-grant' }, 'End', hidden(` ${g.user.email}'s access to ${g.group.name}`));
    const tr = h('tr', { 'data-testid': 'active-grant-row' },
      h('td', null, g.user.email), h('td', null, g.group.name), h('td', null, g.integration),
      h('td', null, time(g.expires_at), h('br'), h('span', { 'data-expires': g.expires_at }, timeLeft(g.expires_at))),
      h('td', null, (g.requester && g.requester.email) || g.requested_by, g.break_glass ? ' (break glass)' : ''),
      h('td', null, end));
    end.addEventListener('click', () => {
      if (!confirm(`End ${g.user.email}'s access to ${g.group.name} now?`)) return;
      act(end, async () => {
        await api('DELETE', `grants/${encodeURIComponent(g.id)}`);
        const next = tr.nextElementSibling || tr.previousElementSibling;
        tr.remove();
        showResult(`${g.user.email}'s access to ${g.group.name} has ended.`);
        (next ? next.querySelector('button') : byId('active-heading')).focus();
      });
    });
    return tr;
  };
  const rows = (page.grants || []).map(row);
  const body = table('active-grants', 'Every active grant, newest first', ['User', 'Group', 'Integration', 'Expires', 'Requested by', 'Action'], rows);
  const more = moreButton(page.next, async (next) => {
    const { data } = await api('GET', `grants${query({ status: 'active', limit: '100', next })}`);
    body.querySelector('tbody').append(...(data.grants || []).map(row));
    return data.next;
  });
  return [rows.length ? body : h('p', { class: 'empty' }, 'No grant is active.'), more];
}

/** "Load more" while the API hands out a `next` token. */
function moreButton(next, load) {
  if (!next) return null;
  let token = next;
  const button = h('button', { type: 'button', class: 'secondary' }, 'Load more');
  button.addEventListener('click', () => act(button, async () => {
    token = await load(token);
    if (!token) button.remove();
  }));
  return button;
}

function syncTable(data) {
  const rows = (data.integrations || []).map((i) => {
    const s = i.sync;
    return h('tr', { 'data-testid': 'sync-row', 'data-integration': i.name },
      h('th', { scope: 'row' }, i.name),
      h('td', null, s ? s.state : 'never synced'),
      h('td', null, s ? time(s.started_at) : '—'),
      h('td', null, s && s.finished_at ? time(s.finished_at) : '—'),
      h('td', null, s ? `${s.users} users, ${s.groups} groups, ${s.memberships} memberships` : '—'),
      h('td', null, s && s.error ? s.error : ''));
  });
  const invalid = (data.invalid || []).map((i) => h('li', null, h('strong', null, i.secret), `: ${i.reason}`));
  return [
    rows.length
      ? table('sync-status', 'The last sync of each integration', ['Integration', 'State', 'Started', 'Finished', 'Directory', 'Error'], rows)
      : h('p', { class: 'empty' }, 'No integration is configured.'),
    invalid.length ? [h('p', null, 'Secrets that could not be used:'), h('ul', { 'data-testid': 'invalid-integrations' }, invalid)] : null,
  ];
}

function auditSearch() {
  const field = (label, input, hint) => {
    input.id = nextId('audit');
    const hintEl = hint ? h('p', { class: 'hint', id: nextId('hint') }, hint) : null;
    if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
    return h('div', { class: 'field' }, h('label', { for: input.id }, label), hintEl, input);
  };
  const today = new Date().toISOString().slice(0, 10);
  const inputs = {
    grant: h('input', { type: 'text', name: 'grant', size: 36, 'data-testid': 'audit-grant' }),
    user: h('input', { type: 'text', name: 'user', 'data-testid': 'audit-user' }),
    group: h('input', { type: 'text', name: 'group', 'data-testid': 'audit-group' }),
    from: h('input', { type: 'date', name: 'from', value: today, 'data-testid': 'audit-from' }),
    to: h('input', { type: 'date', name: 'to', value: today, 'data-testid': 'audit-to' }),
  };
  const results = h('div', { 'data-testid': 'audit-results' });
  const submit = h('button', { type: 'submit', 'data-testid': 'audit-submit' }, 'Search');
  const form = h('form', { class: 'search', 'aria-labelledby': 'audit-heading', 'data-testid': 'audit-form', novalidate: true },
    field('Grant id', inputs.grant, 'One grant\'s whole trail; the other fields are then ignored.'),
    field('User', inputs.user, 'Email, username or id.'),
    field('Group', inputs.group, 'Name or id.'),
    field('From', inputs.from), field('To (inclusive)', inputs.to),
    submit);
  const row = (r) => h('tr', { 'data-testid': 'audit-row' },
    h('td', null, time(r.at)), h('td', null, r.action), h('td', null, r.outcome), h('td', null, r.actor),
    h('td', null, h('code', null, r.grant_id)), h('td', null, [r.reason, r.detail].filter(Boolean).join(' — ')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const params = inputs.grant.value.trim()
      ? { grant: inputs.grant.value.trim() }
      : { user: inputs.user.value.trim(), group: inputs.group.value.trim(), from: inputs.from.value, to: inputs.to.value, limit: '100' };
    act(submit, async () => {
      const { data } = await api('GET', `audit${query(params)}`);
      const records = data.records || [];
      const body = table('audit-table', 'Audit records, oldest first', ['At', 'Action', 'Outcome', 'Actor', 'Grant', 'Reason or detail'], records.map(row));
      const more = moreButton(data.next, async (next) => {
        const page = await api('GET', `audit${query({ ...params, next })}`);
        body.querySelector('tbody').append(...(page.data.records || []).map(row));
        return page.data.next;
      });
      results.replaceChildren(records.length ? body : h('p', { class: 'empty' }, 'No audit record matches.'), more || '');
      showResult(`${records.length} audit record${records.length === 1 ? '' : 's'} found${data.next ? ' (more to load)' : ''}.`);
    });
  });
  return [form, results];
}

// ---------------------------------------------------------------------------------------------
// Start

async function start() {
  window.addEventListener('hashchange', () => {
    if (location.hash.startsWith('#/')) {
      clearMessages();
      route({ focus: true });
    }
  });
  try {
    const response = await fetch('portal/config.json', { credentials: 'omit', cache: 'no-store' });
    if (!response.ok) throw new Error(`The portal's configuration could not be read (${response.status}).`);
    state.config = await response.json();
  } catch (error) {
    state.config = null;
    renderShell();
    await route({ focus: false });
    performance.mark('portal-interactive');
    showProblem(error);
    return;
  }
  const params = new URLSearchParams(location.search);
  let problem = null;
  if (params.has('code') || params.has('error')) {
    try {
      await completeSignIn(params);
    } catch (error) {
      problem = error;
    }
  }
  state.session = loadSession();
  if (state.session) {
    try {
      state.me = (await api('GET', 'me')).data;
    } catch (error) {
      problem = problem || error;
    }
    watchExpiry();
  }
  renderShell();
  await route({ focus: false });
  performance.mark('portal-interactive');
  // A 401 has signed out already, saying why.
  if (problem && !(problem instanceof ApiError && problem.status === 401)) showProblem(problem);
}

start();
