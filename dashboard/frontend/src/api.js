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

// What to do when the server says the session has ended (401), wherever it happens.
export function whenSignedOut(handler) {
  onSignedOut = handler;
}

async function call(url, options = {}) {
  const response = await fetch(url, {
    credentials: 'same-origin',
    ...options,
    headers: {Accept: 'application/json', ...options.headers},
  });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401 && !url.endsWith('/session')) onSignedOut();
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
