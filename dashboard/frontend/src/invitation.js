// The invitation link (beacon users invite / reset): /dashboard/#invitation=bi_…, in
// the fragment so that no server log or Referer sees it. The invitee chooses a
// password here and is signed in.
import {account} from './api.js';
import {h, replaceChildren} from './dom.js';

const MIN_PASSWORD = 10; // storage/accounts.py's MIN_PASSWORD

export async function mountInvitation(root, invitation, onSignedIn) {
  let email;
  try {
    ({email} = await account.invitation(invitation));
  } catch (error) {
    replaceChildren(root, h('main', {className: 'sign-in-page'},
      h('section', {className: 'sign-in'}, h('h1', {}, 'Invitation'), h('p', {role: 'alert'}, error.message),
        h('a', {href: '/dashboard'}, 'Go to the sign-in page'))));
    return;
  }
  const password = h('input', {id: 'new-password', type: 'password', autocomplete: 'new-password', required: true,
    minlength: MIN_PASSWORD, 'aria-describedby': 'password-help'});
  const again = h('input', {id: 'new-password-again', type: 'password', autocomplete: 'new-password', required: true});
  const message = h('p', {className: 'form-error', role: 'alert'});
  const button = h('button', {type: 'submit'}, 'Set the password and sign in');
  const form = h('form', {className: 'sign-in invitation', onsubmit: submit},
    h('h1', {}, h('span', {className: 'logo', 'aria-hidden': 'true'}), 'Welcome to beacon'),
    h('label', {for: 'invited-email'}, 'E-mail'),
    h('input', {id: 'invited-email', type: 'email', autocomplete: 'username', value: email, readonly: true}),
    h('label', {for: 'new-password'}, 'Choose a password'), password,
    h('p', {id: 'password-help', className: 'help'}, `At least ${MIN_PASSWORD} characters. This link works once.`),
    h('label', {for: 'new-password-again'}, 'The password again'), again,
    button,
    message);
  replaceChildren(root, h('main', {className: 'sign-in-page'}, form));
  password.focus();

  async function submit(event) {
    event.preventDefault();
    message.textContent = '';
    if (password.value !== again.value) {
      message.textContent = 'The two passwords differ.';
      again.focus();
      return;
    }
    button.disabled = true;
    try {
      const who = await account.accept(invitation, password.value);
      password.value = again.value = '';
      onSignedIn(who);
    } catch (error) {
      message.textContent = error.message;
      button.disabled = false;
    }
  }
}
