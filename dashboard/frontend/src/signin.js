// Signing in: the token is asked for once, sent in a POST body (never in a URL) and
// exchanged for an HttpOnly session cookie; the page keeps no copy of it.
import {ApiError, session} from './api.js';
import {h, replaceChildren} from './dom.js';

export function mountSignIn(root, onSignedIn) {
  const input = h('input', {id: 'token', type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false',
    required: true, 'aria-describedby': 'token-help'});
  const message = h('p', {className: 'form-error', role: 'alert'});
  const button = h('button', {type: 'submit'}, 'Sign in');
  const form = h('form', {className: 'sign-in', onsubmit: submit},
    h('h1', {}, h('span', {className: 'logo', 'aria-hidden': 'true'}), 'beacon'),
    h('label', {for: 'token'}, 'API token'),
    input,
    h('p', {id: 'token-help', className: 'help'}, 'An analyst or admin token, e.g. from ',
      h('code', {}, 'beacon tokens create --role analyst'), '. It is sent once; the session lasts 7 days or until you sign out.'),
    button,
    message);
  replaceChildren(root, h('main', {className: 'sign-in-page'}, form));
  input.focus();

  async function submit(event) {
    event.preventDefault();
    button.disabled = true;
    message.textContent = '';
    try {
      const who = await session.signIn(input.value.trim());
      input.value = '';
      onSignedIn(who);
    } catch (error) {
      message.textContent = error instanceof ApiError && error.status === 401
        ? 'This token is unknown or revoked.' : error.message;
      button.disabled = false;
      input.select();
    }
  }
}
