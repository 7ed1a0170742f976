// The top-N panels: one breakdown of the Stats API per panel, for its selected view.
// Clicking a row filters the whole page by that value; each panel exports its rows.
// With a goal filter every view shows goal mode's columns (conversions, total
// conversions, conversion rate; revenue for a revenue goal) in place of its own.
// Clicking a column's heading sorts the rows by it (most first): the API sorts by the
// first metric asked, so the top rows are the right ones, not a re-sorted top 10.
import {ApiError, stats} from './api.js';
import {download, toCsv} from './csv.js';
import {h, replaceChildren} from './dom.js';
import {countryName, languageName} from './format.js';
import {drawMap, loadShapes} from './map.js';
import {columnLabel, ENGAGEMENT, formatMetric, GOAL_METRICS, REVENUE_METRICS, shortColumnLabel} from './metrics.js';
import {propertyKey, propertyLabel} from './properties.js';

const TOP = 10;
// Goal mode's columns a phone leaves out (the crowded table's; the CSV keeps them).
const SECONDARY = ['events', 'average_revenue'];
const EXPORT_LIMIT = 1000;
const SNIPPET_EVENT = "beacon('event', 'Signup')";
const GEOIP_OPTION = 'beacon serve --geoip GeoLite2-City.mmdb';

const text = value => (value == null || value === '' ? '(not set)' : String(value));
const sourceName = value => (value ? value : 'Direct / None');
const capitalised = value => (value ? value[0].toUpperCase() + value.slice(1) : '(not set)');

// A view names its property; its column heading and row key are the registry's (properties.js).
function view(label, property, metrics = ['visitors'], more = {}) {
  return {label, property, metrics, name: text, ...more};
}

const UTM = [
  view('Source', 'visit:utm_source'),
  view('Medium', 'visit:utm_medium'),
  view('Campaign', 'visit:utm_campaign'),
  view('Term', 'visit:utm_term'),
  view('Content', 'visit:utm_content'),
];

export const PANELS = [
  {id: 'pages', title: 'Pages', views: [
    view('Top pages', 'event:page', ['visitors', 'pageviews'], {engagement: true}),
    view('Entry pages', 'visit:entry_page', ['visitors', 'visits']),
    view('Exit pages', 'visit:exit_page', ['visitors', 'visits']),
  ]},
  {id: 'sources', title: 'Sources', views: [
    view('Sources', 'visit:source', ['visitors'], {name: sourceName}),
    view('Referrers', 'visit:referrer'),
    {...UTM[0], label: 'Campaigns', choices: UTM},
  ]},
  {id: 'locations', title: 'Locations', views: [
    view('Map', 'visit:country', ['visitors'], {name: countryName, map: true, located: true}),
    view('Countries', 'visit:country', ['visitors'], {name: countryName, located: true}),
    view('Regions', 'visit:region', ['visitors'], {located: true}),
    view('Cities', 'visit:city', ['visitors'], {located: true}),
  ]},
  {id: 'devices', title: 'Devices', views: [
    view('Devices', 'visit:device', ['visitors'], {name: capitalised}),
    view('Browsers', 'visit:browser'),
    view('OS', 'visit:os'),
  ]},
  {id: 'languages', title: 'Languages', views: [
    view('Languages', 'visit:language', ['visitors'], {name: languageName}),
  ]},
  {id: 'conversions', title: 'Goals & events', views: [
    view('Goals', 'event:goal', ['visitors', 'events', 'conversion_rate'], {empty: goalsEmpty}),
    view('Custom events', 'event:name', ['visitors', 'events'], {rate: true, empty: eventsEmpty}),
  ]},
];

// Goals that exist but were not reached call for no set-up advice.
function goalsEmpty(site, goals) {
  if (goals.length) return [`No goal reached in this period (goals of ${site}: ${goals.join(', ')}).`];
  return ['No goal reached in this period. Goals are set on the server: ',
    h('code', {}, `beacon goals add ${site} --event Signup`), ' or ', h('code', {}, '--page /thank-you'), '.'];
}

// Visits without a location: beacon fills it only with a GeoIP database.
function notLocated() {
  return h('p', {className: 'notice geoip'}, 'No location is known for these visits. beacon fills countries, ',
    'regions and cities only when it runs with a GeoIP database: ', h('code', {}, GEOIP_OPTION),
    ' (README, section “Location (GeoIP)”).');
}

// Asked with imports, a view the imported tables cannot answer whole is answered from
// the site's own figures only (the API's meta.imports_skip_reason): say so.
function importsNotice() {
  return h('p', {className: 'notice imports-left-out'},
    'Imported data is not included in this view: a Plausible archive holds no figures for it',
    ' (this property, or this property under these filters).');
}

function eventsEmpty() {
  return ['No custom events in this period. Pages send them with ', h('code', {}, SNIPPET_EVENT), '.'];
}

// ctx: {query() → the API parameters of the view (site, period, filters),
//       goals() → the names of the site's goals,
//       goalMode() → whether a goal filters the page, currency() → its revenue currency or '',
//       filter(property, value), visitorsBeforeEvents() → Promise<number> (the visitors
//       without the filters on events: the base of a conversion rate),
//       fileStem() → name for exported files}
export function createPanel(def, ctx) {
  let selected = def.views[0];
  let choice = selected.choices?.[0] ?? selected;
  let rows = [];
  let sortedBy = null;  // the metric the rows are sorted by; null: the view's first
  const title = h('h2', {id: `panel-${def.id}`}, def.title);
  const buttons = def.views.map(v => h('button', {
    type: 'button', className: 'view', 'aria-pressed': String(v === selected),
    onclick: () => select(v),
  }, v.label));
  const switcher = def.views.length > 1 ? h('div', {className: 'views', role: 'group', 'aria-label': `${def.title} views`}, buttons) : null;
  const body = h('div', {className: 'panel-body'});
  const exportButton = h('button', {type: 'button', className: 'export', onclick: exportCsv,
    'aria-label': `Export CSV of ${def.title}`}, 'Export CSV');
  const element = h('section', {className: `panel panel-${def.id}`, 'aria-labelledby': title.id, dataset: {panel: def.id}},
    h('header', {className: 'panel-head'}, title, switcher),
    body,
    h('footer', {className: 'panel-foot'}, exportButton));

  let controller = null;

  function select(v) {
    selected = v;
    choice = v.choices?.[0] ?? v;
    sortedBy = null;
    buttons.forEach((b, i) => b.setAttribute('aria-pressed', String(def.views[i] === v)));
    load();
  }

  async function fetchRows(limit, signal) {
    const q = ctx.query();
    const rate = choice.rate && !ctx.goalMode();
    const asked = metricsAsked();
    const [result, total] = await Promise.all([
      stats('breakdown', {...q, property: choice.property, metrics: asked.join(','), limit}, signal),
      rate ? ctx.visitorsBeforeEvents() : null,
    ]);
    let found = result.results;
    if (choice.property === 'event:name') found = found.filter(r => r.name && r.name !== 'pageview');
    if (rate) found = found.map(r => ({...r, conversion_rate: total ? Math.round(r.visitors / total * 1000) / 10 : 0}));
    return {found, importsLeftOut: q.with_imported && result.meta?.imports_skip_reason === 'unsupported_query'};
  }

  // The view's metrics, and engagement's where the API answers it (pages filtered on pages
  // only), unless imported figures are asked for: the imported tables hold no engagement,
  // and a question they cannot answer whole is answered without them.
  function viewMetrics() {
    const pagesOnly = ctx.filters().every(f => f.property === 'event:page');
    const engaged = choice.engagement && pagesOnly && !ctx.query().with_imported;
    return engaged ? [...choice.metrics, ...ENGAGEMENT] : choice.metrics;
  }

  // The columns: goal mode's under a goal filter, else the view's own.
  function metricsShown() {
    if (ctx.goalMode()) return [...GOAL_METRICS, ...(ctx.currency() ? REVENUE_METRICS : [])];
    return choice.rate ? [...viewMetrics(), 'conversion_rate'] : viewMetrics();
  }

  // What the API is asked, the sorting column first (a rate computed here is not asked).
  function metricsAsked() {
    const asked = metricsShown().filter(m => !(choice.rate && !ctx.goalMode() && m === 'conversion_rate'));
    const first = asked.includes(sortedBy) ? sortedBy : asked[0];
    return [first, ...asked.filter(m => m !== first)];
  }

  function sortBy(metric) {
    sortedBy = metric;
    load();
  }

  async function load() {
    controller?.abort();
    controller = new AbortController();
    const {signal} = controller;
    element.dataset.state = 'loading';
    body.setAttribute('aria-busy', 'true');
    try {
      const [{found, importsLeftOut}, map] = await Promise.all([fetchRows(TOP, signal), selected.map ? loadShapes() : null]);
      const visitors = importsLeftOut ? ctx.ownVisitorsBeforeEvents : ctx.visitorsBeforeEvents;
      const unlocated = choice.located && !found.some(r => r[propertyKey(choice.property)]) && await visitors() > 0;
      if (signal.aborted) return;
      rows = found;
      replaceChildren(body, selected.choices ? picker() : null, importsLeftOut ? importsNotice() : null,
        unlocated ? notLocated() : null, map ? mapView(map) : null, unlocated && !rows.length ? null : table());
      element.dataset.state = 'ready';
    } catch (error) {
      if (signal.aborted) return;
      replaceChildren(body, h('p', {className: unavailable(error) ? 'notice' : 'notice error'}, failure(error)));
      element.dataset.state = 'failed';
    } finally {
      if (!signal.aborted) body.removeAttribute('aria-busy');
    }
  }

  // A server whose Stats API predates a property answers 400 naming it.
  function unavailable(error) {
    return error instanceof ApiError && error.status === 400 && error.message.includes(choice.property);
  }

  function failure(error) {
    if (unavailable(error)) return `This server's Stats API cannot break visits down by ${propertyLabel(choice.property).toLowerCase()} yet.`;
    return `Could not load ${def.title.toLowerCase()}: ${error.message}`;
  }

  function picker() {
    const select = h('select', {className: 'choice', 'aria-label': 'UTM parameter',
      onchange: event => {
        choice = selected.choices[event.target.selectedIndex];
        load();
      }},
    selected.choices.map(c => h('option', {value: c.property, selected: c === choice}, propertyLabel(c.property))));
    return h('div', {className: 'choice-row'}, select);
  }

  function mapView(map) {
    return h('div', {className: 'map'}, drawMap(map, rows, code => ctx.filter('visit:country', code)));
  }

  function table() {
    if (!rows.length) {
      const message = choice.empty ? choice.empty(ctx.query().site_id, ctx.goals()) : ['Nothing to show for this period.'];
      return h('p', {className: 'notice empty'}, ...message);
    }
    const shown = metricsShown();
    const currency = ctx.currency();
    const most = Math.max(1, ...rows.map(r => r.visitors ?? 0));
    const crowded = shown.length > 3;
    const secondary = m => (crowded && SECONDARY.includes(m) ? ' secondary' : '');
    return h('table', {className: crowded ? 'rows crowded' : 'rows'},
      h('thead', {}, h('tr', {},
        h('th', {scope: 'col'}, propertyLabel(choice.property)),
        shown.map(m => columnHead(m, secondary(m))))),
      h('tbody', {}, rows.map(row => {
        const value = row[propertyKey(choice.property)];
        const bar = h('span', {className: 'bar', 'aria-hidden': 'true'});
        bar.style.width = `${(100 * (row.visitors ?? 0)) / most}%`;
        const label = choice.name(value);
        return h('tr', {dataset: {value: value ?? ''}},
          h('td', {className: 'label'}, bar,
            h('button', {type: 'button', className: 'filter', title: `Filter by ${propertyLabel(choice.property)}: ${label}`,
              onclick: () => ctx.filter(choice.property, String(value ?? ''))}, label)),
          shown.map(m => h('td', {className: `num${secondary(m)}`, dataset: {metric: m, value: row[m] ?? ''}}, formatMetric(m, row[m], currency))));
      })));
  }

  // The full name (a wide column), and a short one that narrow screens show instead;
  // a button that sorts by the column (a computed rate is not the API's to sort by).
  function columnHead(metric, extraClass = '') {
    const goalMode = ctx.goalMode();
    const [full, short] = [columnLabel(metric, goalMode), shortColumnLabel(metric, goalMode)];
    const sorted = metricsAsked()[0] === metric;
    const name = full === short ? full : [h('span', {className: 'column-full'}, full),
      h('span', {className: 'column-short', 'aria-hidden': 'true'}, short)];
    const sortable = !(choice.rate && !goalMode && metric === 'conversion_rate');
    const label = sortable ? h('button', {type: 'button', className: 'sort', dataset: {metric},
      title: `Sort by ${full.toLowerCase()}`, onclick: () => sortBy(metric)}, name) : name;
    return h('th', {scope: 'col', className: (full === short ? 'num' : 'num wide') + extraClass, title: full,
      'aria-sort': sorted ? 'descending' : 'none'}, label);
  }

  async function exportCsv() {
    exportButton.disabled = true;
    try {
      const {found: all} = await fetchRows(EXPORT_LIMIT);
      const shown = metricsShown();
      const header = [propertyKey(choice.property), ...(propertyKey(choice.property) === 'country' ? ['country_name'] : []), ...shown];
      const lines = all.map(r => [r[propertyKey(choice.property)], ...(propertyKey(choice.property) === 'country' ? [countryName(r.country)] : []),
        ...shown.map(m => r[m])]);
      download(`${ctx.fileStem()}-${propertyKey(choice.property)}.csv`, toCsv(header, lines));
    } catch (error) {
      replaceChildren(body, h('p', {className: 'notice error'}, failure(error)));
    } finally {
      exportButton.disabled = false;
    }
  }

  return {element, load};
}
