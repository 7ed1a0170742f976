// A shared link's page (/share/SECRET, ?embed=true inside another site's page): the
// dashboard of one site, read through the Stats API with the link's secret in a
// header, or with the pass its password gives. Nothing is kept: a reload asks for
// the password again.
import {ApiError, share, useShare, whenSignedOut} from './api.js';
import {mountDashboard} from './dashboard.js';
import {h, replaceChildren} from './dom.js';

export function mountShared(root) {
  const secret = location.pathname.split('/')[2] ?? '';
  const embed = new URLSearchParams(location.search).get('embed') === 'true';
  let unmount = () => {};

  function refused(message) {
    unmount();
    unmount = () => {};
    replaceChildren(root, h('main', {className: 'notice error shared-refused'}, h('h1', {}, message)));
  }

  function ended(status) {
    if (status === 410) refused('This shared link was revoked or has expired.');
    else askPassword('The link asks for its password again.');
  }

  async function open(credential) {
    useShare(credential);
    const who = await share.about(secret);
    unmount();
    document.title = `${who.sites[0] ?? 'beacon'} · shared dashboard`;
    unmount = mountDashboard(root, who, () => {}, {shared: true, embed});
  }

  function askPassword(note = '') {
    unmount();
    unmount = () => {};
    const input = h('input', {id: 'share-password', type: 'password', name: 'password', autocomplete: 'current-password',
      required: true});
    const message = h('p', {className: 'form-error', role: 'alert'}, note);
    const button = h('button', {type: 'submit'}, 'Open');
    const form = h('form', {className: 'sign-in', onsubmit: submit},
      h('h1', {}, h('span', {className: 'logo', 'aria-hidden': 'true'}), 'Shared dashboard'),
      h('label', {for: 'share-password'}, 'Password'),
      input,
      button,
      message);
    replaceChildren(root, h('main', {className: 'sign-in-page'}, form));
    input.focus();

    async function submit(event) {
      event.preventDefault();
      button.disabled = true;
      message.textContent = '';
      try {
        const {pass} = await share.unlock(secret, input.value);
        input.value = '';
        await open(pass);
      } catch (error) {
        if (error instanceof ApiError && error.status === 410) return refused('This shared link was revoked or has expired.');
        message.textContent = error instanceof ApiError && error.status === 403 ? 'Wrong password.' : error.message;
        button.disabled = false;
        input.select();
      }
    }
  }

  async function start() {
    whenSignedOut(ended);
    try {
      await open(secret);
    } catch (error) {
      if (!(error instanceof ApiError)) refused(`The dashboard cannot start: ${error.message}`);
      else if (error.status === 401) askPassword();
      else if (error.status === 404) refused('There is no such shared link.');
      else if (error.status === 410) refused('This shared link was revoked or has expired.');
      else refused(`The dashboard cannot start: ${error.message}`);
    }
  }

  start();
}
