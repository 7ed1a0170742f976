// Calls to this server: the dashboard's session routes and the Stats API. The session
// cookie goes with them (same origin); the page never sees or keeps the token.

export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

let onSignedOut = () => {};
// On a shared link's page: the link's secret, or the pass its password gave; sent in
// X-Beacon-Share instead of any cookie.
let shareCredential = null;

export function useShare(credential) {
  shareCredential = credential;
}

// What to do when the server says the session has ended (401), wherever it happens.
export function whenSignedOut(handler) {
  onSignedOut = handler;
}

async function call(url, options = {}) {
  const shared = shareCredential ? {'X-Beacon-Share': shareCredential} : {};
  const response = await fetch(url, {
    credentials: shareCredential ? 'omit' : 'same-origin',
    ...options,
    headers: {Accept: 'application/json', ...shared, ...options.headers},
  });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  const ended = response.status === 401 || (shareCredential && response.status === 410);
  if (ended && !url.endsWith('/session') && !url.endsWith('/unlock')) onSignedOut(response.status);
  if (!response.ok) throw new ApiError(response.status, body?.error ?? `${response.status} ${response.statusText}`, body);
  return body;
}

export const session = {
  current: () => call('/dashboard/session'),
  signIn: token => post('/dashboard/session', {token}),
  signInAs: (email, password, code) => post('/dashboard/session', {email, password, ...(code ? {code} : {})}),
  signOut: () => call('/dashboard/session', {method: 'DELETE'}),
};

// Invitations and two-factor (dashboard/accounts.py). The invitation's secret and the
// password go in POST bodies only.
export const account = {
  invitation: invitation => post('/dashboard/invitation', {invitation}),
  accept: (invitation, password) => post('/dashboard/invitation', {invitation, password}),
  beginTwoFactor: () => post('/dashboard/account/totp', {}),
  confirmTwoFactor: code => post('/dashboard/account/totp/confirm', {code}),
};

function post(url, fields) {
  return call(url, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(fields)});
}

// GET /api/v1/stats/<kind>?… ; `signal` aborts it when the view changes first.
export function stats(kind, params, signal) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v != null && v !== ''));
  return call(`/api/v1/stats/${kind}?${query}`, {signal});
}

// A shared link's page: what it shows, and its password exchanged for a pass.
export const share = {
  about: secret => call(`/share/${secret}/about`),
  unlock: (secret, password) => call(`/share/${secret}/unlock`, {
    method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({password}),
  }),
};

// An admin's management of shared links.
export const shareLinks = {
  list: () => call('/dashboard/shares'),
  create: link => call('/dashboard/shares', {
    method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify(link),
  }),
  revoke: id => call(`/dashboard/shares/${encodeURIComponent(id)}`, {method: 'DELETE'}),
};

// A Plausible CSV archive (a zip) imported into a site, by an admin of it (dashboard/archive_import.py).
export function importArchive(site, file, replace) {
  const query = new URLSearchParams({site, replace: String(replace)});
  return call(`/dashboard/import/plausible?${query}`, {
    method: 'POST', headers: {'Content-Type': 'application/zip'}, body: file});
}
