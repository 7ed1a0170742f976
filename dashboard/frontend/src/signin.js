// Signing in: with an e-mail address and a password (and the authenticator's code when
// the account has two-factor on), through single sign-on when the server offers it, or
// with an API token. Each is sent once, in a POST body (never in a URL), and exchanged
// for an HttpOnly session cookie; the page keeps no copy.
import {ApiError, session} from './api.js';
import {h, replaceChildren} from './dom.js';

const NOTICES = {
  refused: 'Single sign-on refused: this address or its groups may not use this dashboard.',
  failed: 'Single sign-on did not complete: try again.',
};

export function mountSignIn(root, onSignedIn, {sso = false, notice = ''} = {}) {
  showPassword();

  function page(form, first) {
    replaceChildren(root, h('main', {className: 'sign-in-page'}, form));
    first.focus();
  }

  function heading() {
    return h('h1', {}, h('span', {className: 'logo', 'aria-hidden': 'true'}), 'beacon');
  }

  function showPassword() {
    const email = h('input', {id: 'email', type: 'email', name: 'email', autocomplete: 'username', required: true});
    const password = h('input', {id: 'password', type: 'password', name: 'password', autocomplete: 'current-password',
      required: true});
    const code = h('input', {id: 'code', name: 'code', autocomplete: 'one-time-code', inputmode: 'numeric',
      spellcheck: 'false', 'aria-describedby': 'code-help'});
    const codeField = h('div', {className: 'code-field', hidden: true},
      h('label', {for: 'code'}, 'Authentication code'), code,
      h('p', {id: 'code-help', className: 'help'}, 'The 6 digits of your authenticator app, or a recovery code.'));
    const message = h('p', {className: 'form-error', role: 'alert'}, NOTICES[notice] ?? '');
    const button = h('button', {type: 'submit'}, 'Sign in');
    const form = h('form', {className: 'sign-in', onsubmit: submit},
      heading(),
      h('label', {for: 'email'}, 'E-mail'), email,
      h('label', {for: 'password'}, 'Password'), password,
      codeField,
      button,
      message,
      sso ? h('a', {className: 'sso', href: '/dashboard/oidc/start'}, 'Sign in with single sign-on') : null,
      h('button', {type: 'button', className: 'switch', onclick: showToken}, 'Use an API token instead'));
    page(form, email);

    async function submit(event) {
      event.preventDefault();
      button.disabled = true;
      message.textContent = '';
      try {
        const who = await session.signInAs(email.value.trim(), password.value, code.value.trim());
        password.value = '';
        onSignedIn(who);
      } catch (error) {
        button.disabled = false;
        if (error instanceof ApiError && error.body?.second_factor) {
          codeField.hidden = false;
          code.required = true;
          code.focus();
          return;
        }
        message.textContent = error.message;
      }
    }
  }

  function showToken() {
    const input = h('input', {id: 'token', type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false',
      required: true, 'aria-describedby': 'token-help'});
    const message = h('p', {className: 'form-error', role: 'alert'});
    const button = h('button', {type: 'submit'}, 'Sign in');
    const form = h('form', {className: 'sign-in', onsubmit: submit},
      heading(),
      h('label', {for: 'token'}, 'API token'),
      input,
      h('p', {id: 'token-help', className: 'help'}, 'An analyst or admin token, e.g. from ',
        h('code', {}, 'beacon tokens create --role analyst'), '. It is sent once; the session lasts 7 days or until you sign out.'),
      button,
      message,
      h('button', {type: 'button', className: 'switch', onclick: showPassword}, 'Use an e-mail address instead'));
    page(form, input);

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
}
