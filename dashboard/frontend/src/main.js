// The dashboard's entry point: the signed-in view when the session cookie is valid,
// else the sign-in form; a 401 from any call later brings the form back. The fragment
// routes the account pages: #invitation=… (choose a password), #two-factor (setup),
// #sso=refused|failed (single sign-on's outcome, told on the sign-in form).
import {mountTwoFactor} from './account.js';
import {ApiError, session, whenSignedOut} from './api.js';
import {mountDashboard} from './dashboard.js';
import {h, replaceChildren} from './dom.js';
import {mountInvitation} from './invitation.js';
import {mountShared} from './sharepage.js';
import {mountSignIn} from './signin.js';

const root = document.getElementById('app');
let unmount = () => {};
let signedInAs = null;
let ssoOffered = false;

function signedOut(notice = '') {
  if (!signedInAs && root.querySelector('.sign-in') && !notice) return; // several calls saw the 401
  signedInAs = null;
  unmount();
  unmount = () => {};
  mountSignIn(root, signedIn, {sso: ssoOffered, notice});
}

function signedIn(who) {
  signedInAs = who;
  ssoOffered = who.sso;
  show();
}

function show() {
  unmount();
  unmount = () => {};
  if (location.hash === '#two-factor') {
    mountTwoFactor(root, signedInAs, () => {
      history.pushState(null, '', location.pathname + location.search);
      show();
    });
  } else {
    unmount = mountDashboard(root, signedInAs, () => signedOut());
  }
}

// Read once, then taken out of the address bar (and of the history): the invitation is a secret.
function fragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const found = {invitation: params.get('invitation'), sso: params.get('sso')};
  if (found.invitation || found.sso) history.replaceState(null, '', location.pathname + location.search);
  return found;
}

async function start() {
  whenSignedOut(() => signedOut());
  addEventListener('hashchange', () => signedInAs && show());
  const {invitation, sso} = fragment();
  if (invitation) {
    mountInvitation(root, invitation, signedIn);
    return;
  }
  try {
    signedIn(await session.current());
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      ssoOffered = Boolean(error.body?.sso);
      signedOut(sso ?? '');
    } else {
      replaceChildren(root, h('main', {className: 'notice error'}, `The dashboard cannot start: ${error.message}`));
    }
  }
}

if (location.pathname.startsWith('/share/')) mountShared(root);
else start();
