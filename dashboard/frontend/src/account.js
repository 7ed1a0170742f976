// Who is signed in (the header's account menu) and the two-factor setup page
// (/dashboard/#two-factor): a QR code of the otpauth URI, served as an SVG image by
// /dashboard/account/totp.svg, the key in text for manual entry, a code to confirm,
// then the recovery codes, shown once.
import {account} from './api.js';
import {h, replaceChildren} from './dom.js';

export function accountMenu(who) {
  const user = who.user;
  const name = user ? user.email : `Token ${who.token.id}`;
  const roles = user
    ? user.roles.map(r => `${r.role} on ${r.site ?? 'every site'}`).join(', ')
    : `${who.token.role} token on ${who.token.site ?? 'every site'}`;
  const twoFactor = user && !user.sso
    ? (user.second_factor ? h('p', {}, 'Two-factor sign-in is on.') : h('a', {href: '#two-factor'}, 'Set up two-factor sign-in'))
    : null;
  return h('details', {className: 'account'},
    h('summary', {}, h('span', {className: 'visually-hidden'}, 'Signed in as '), name),
    h('div', {className: 'account-panel'},
      h('p', {}, h('strong', {}, 'Roles: '), roles),
      user?.sso ? h('p', {}, 'Signed in through single sign-on.') : null,
      twoFactor));
}

export function mountTwoFactor(root, who, onDone) {
  const back = () => h('button', {type: 'button', className: 'back', onclick: onDone}, 'Back to the dashboard');
  const section = h('section', {className: 'sign-in two-factor', 'aria-labelledby': 'two-factor-title'},
    h('h1', {id: 'two-factor-title'}, 'Two-factor sign-in'));
  replaceChildren(root, h('main', {className: 'sign-in-page'}, section));
  if (!who.user || who.user.sso) {
    section.append(h('p', {}, 'Two-factor sign-in is for accounts with a password.'), back());
    return;
  }
  if (who.user.second_factor) {
    section.append(h('p', {}, 'Two-factor sign-in is on. An admin turns it off with beacon users reset.'), back());
    return;
  }
  start();

  async function start() {
    let uri;
    try {
      ({uri} = await account.beginTwoFactor());
    } catch (error) {
      section.append(h('p', {role: 'alert'}, error.message), back());
      return;
    }
    const key = new URL(uri).searchParams.get('secret');
    const code = h('input', {id: 'totp-code', autocomplete: 'one-time-code', inputmode: 'numeric', required: true,
      spellcheck: 'false'});
    const message = h('p', {className: 'form-error', role: 'alert'});
    const button = h('button', {type: 'submit'}, 'Turn on two-factor sign-in');
    const form = h('form', {onsubmit: confirm},
      h('label', {for: 'totp-code'}, 'The 6-digit code the app shows'), code, button, message);
    section.append(
      h('p', {}, 'Scan this QR code with an authenticator app, or type the key into it.'),
      h('img', {className: 'qr', src: `/dashboard/account/totp.svg?${Date.now()}`, width: 180, height: 180,
        alt: 'QR code of the two-factor key'}),
      h('p', {}, 'Key: ', h('code', {className: 'totp-key'}, key)),
      form,
      back());
    code.focus();

    async function confirm(event) {
      event.preventDefault();
      button.disabled = true;
      message.textContent = '';
      try {
        const {recovery_codes: codes} = await account.confirmTwoFactor(code.value.trim());
        who.user.second_factor = true;
        replaceChildren(section,
          h('h1', {id: 'two-factor-title'}, 'Two-factor sign-in is on'),
          h('h2', {}, 'Recovery codes'),
          h('p', {}, 'Each code signs you in once in place of the app. Keep them somewhere safe: they are not shown again.'),
          h('ul', {className: 'recovery-codes'}, codes.map(c => h('li', {}, h('code', {}, c)))),
          back());
      } catch (error) {
        message.textContent = error.message;
        button.disabled = false;
        code.select();
      }
    }
  }
}
