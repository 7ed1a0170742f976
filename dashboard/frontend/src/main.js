// The dashboard's entry point: the signed-in view when the session cookie is valid,
// else the sign-in form; a 401 from any call later brings the form back.
import {ApiError, session, whenSignedOut} from './api.js';
import {mountDashboard} from './dashboard.js';
import {h, replaceChildren} from './dom.js';
import {mountShared} from './sharepage.js';
import {mountSignIn} from './signin.js';

const root = document.getElementById('app');
let unmount = () => {};
let signedInNow = false;

function signedOut() {
  if (!signedInNow && root.querySelector('.sign-in')) return; // several calls saw the 401
  signedInNow = false;
  unmount();
  unmount = () => {};
  mountSignIn(root, signedIn);
}

function signedIn(who) {
  signedInNow = true;
  unmount();
  unmount = mountDashboard(root, who, signedOut);
}

async function start() {
  whenSignedOut(signedOut);
  try {
    signedIn(await session.current());
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signedOut();
    else replaceChildren(root, h('main', {className: 'notice error'}, `The dashboard cannot start: ${error.message}`));
  }
}

if (location.pathname.startsWith('/share/')) mountShared(root);
else start();
