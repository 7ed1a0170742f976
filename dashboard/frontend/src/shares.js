// Shared links, for an admin's session: the list (never the secrets, which are shown
// once, when made), a form to make one, and a revoke button per active link.
import {shareLinks} from './api.js';
import {h, replaceChildren} from './dom.js';

function expiry(seconds) {
  return seconds ? new Date(seconds * 1000).toISOString().slice(0, 16).replace('T', ' ') + ' UTC' : 'never';
}

export function createSharesPanel(sites) {
  const list = h('tbody');
  const status = h('p', {className: 'shares-status', role: 'status'});
  const made = h('p', {className: 'share-made', hidden: true});
  const site = h('select', {id: 'share-site', name: 'site'}, sites.map(s => h('option', {value: s}, s)));
  const password = h('input', {id: 'share-password-new', type: 'password', name: 'password', autocomplete: 'new-password'});
  const days = h('input', {id: 'share-days', type: 'number', name: 'expires_days', min: '0', max: '3650', value: '0'});
  const origins = h('input', {id: 'share-origins', type: 'text', name: 'embed_origins', spellcheck: 'false',
    'aria-describedby': 'share-origins-help'});
  const form = h('form', {className: 'share-form', onsubmit: create},
    h('label', {for: 'share-site'}, 'Site'), site,
    h('label', {for: 'share-password-new'}, 'Password (optional)'), password,
    h('label', {for: 'share-days'}, 'Expires after (days, 0 = never)'), days,
    h('label', {for: 'share-origins'}, 'Pages allowed to embed it'), origins,
    h('p', {id: 'share-origins-help', className: 'help'}, 'Origins (scheme://host[:port]) separated by spaces; none: no page may embed it.'),
    h('button', {type: 'submit'}, 'Create shared link'));
  const element = h('section', {className: 'panel panel-shares', 'aria-labelledby': 'shares-title'},
    h('h2', {id: 'shares-title'}, 'Shared links'),
    form, made, status,
    h('table', {className: 'shares'},
      h('caption', {className: 'visually-hidden'}, 'Shared links'),
      h('thead', {}, h('tr', {}, ['Id', 'Site', 'Password', 'Expires', 'Embeddable from', 'Created (UTC)', 'State', 'Action']
        .map(name => h('th', {scope: 'col'}, name)))),
      list));

  async function refresh() {
    try {
      const {shares} = await shareLinks.list();
      replaceChildren(list, shares.map(row));
    } catch (error) {
      status.textContent = `The shared links cannot be listed: ${error.message}`;
    }
  }

  function row(link) {
    const revoke = link.revoked ? '' : h('button', {type: 'button', className: 'revoke',
      'aria-label': `Revoke shared link ${link.id}`, onclick: () => revokeLink(link.id)}, 'Revoke');
    return h('tr', {dataset: {share: link.id}},
      h('td', {}, h('code', {}, link.id)), h('td', {}, link.site), h('td', {}, link.password ? 'yes' : 'no'),
      h('td', {}, expiry(link.expires_at)), h('td', {}, link.embed_origins.join(' ') || '–'),
      h('td', {}, link.created), h('td', {}, link.revoked ? 'revoked' : 'active'), h('td', {}, revoke));
  }

  async function create(event) {
    event.preventDefault();
    status.textContent = '';
    try {
      const {secret, share} = await shareLinks.create({
        site: site.value, password: password.value, expires_days: Number(days.value) || 0,
        embed_origins: origins.value.split(/\s+/).filter(Boolean),
      });
      password.value = '';
      const url = `${location.origin}/share/${secret}`;
      replaceChildren(made, `Shared link ${share.id} (shown once): `,
        h('a', {href: url, className: 'share-url', target: '_blank', rel: 'noopener'}, url));
      made.hidden = false;
      await refresh();
    } catch (error) {
      status.textContent = `Not created: ${error.message}`;
    }
  }

  async function revokeLink(id) {
    try {
      await shareLinks.revoke(id);
      status.textContent = `Shared link ${id} revoked.`;
      await refresh();
    } catch (error) {
      status.textContent = `Not revoked: ${error.message}`;
    }
  }

  refresh();
  return element;
}
