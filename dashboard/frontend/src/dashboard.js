// The signed-in page: header (site, realtime visitors, sign-out), period and filters,
// headline numbers with their change, the chart, and the panels. Every change of view
// goes through the URL (navigate → pushState → load), so back, forward and reload
// show the same view. Days, hours and "now" are the site's (its time zone: zone.js).
import {accountMenu} from './account.js';
import {importArchive, session, stats} from './api.js';
import {drawChart} from './chart.js';
import {h, replaceChildren} from './dom.js';
import {countryName, formatDay, formatOffset, languageName} from './format.js';
import {createFunnelPanel} from './funnel.js';
import {
  counted, formatChange, formatMetric, GOAL_METRICS, HEADLINE, isCount, lowerIsBetter, REVENUE_METRICS, setMetrics,
  tileLabel,
} from './metrics.js';
import {createPanel, PANELS} from './panels.js';
import {setProperties} from './properties.js';
import {createSharesPanel} from './shares.js';
import {
  dayName, filtersParam, interval, periodParams, PERIODS, range, readState, shift, today, withFilter, writeState,
  zoneOf,
} from './state.js';
import {isFuture, offsetIn, timeIn} from './zone.js';

const REALTIME_EVERY_MS = 10000;
// The tracker sends nothing from these hosts without data-allow-local.
const LOCAL_HOST = /^localhost$|^127(\.\d+){3}$|^\[::1?\]$/;
const EVENT_LEVEL = /^event:(name|goal|props:)/;
const PROPERTY_NAMES = {
  'event:page': 'Page', 'event:name': 'Event', 'event:goal': 'Goal', 'event:hostname': 'Hostname',
  'visit:entry_page': 'Entry page', 'visit:exit_page': 'Exit page', 'visit:source': 'Source',
  'visit:referrer': 'Referrer', 'visit:utm_source': 'UTM source', 'visit:utm_medium': 'UTM medium',
  'visit:utm_campaign': 'UTM campaign', 'visit:utm_term': 'UTM term', 'visit:utm_content': 'UTM content',
  'visit:device': 'Device', 'visit:browser': 'Browser', 'visit:os': 'OS', 'visit:country': 'Country',
  'visit:region': 'Region', 'visit:city': 'City', 'visit:language': 'Language',
};
const OPERATOR_WORDS = {'==': 'is', '!=': 'is not', '~': 'contains'};

// The metrics the headline shows, as the Stats API allows them: a filter on an event
// (goal, name, property) leaves no visit to count, so then it shows conversions (and
// revenue, for a revenue goal's ``currency``); with a page filter, views per visit
// would count only that page's views (refused).
function headlineMetrics(filters, currency = '') {
  if (filters.some(f => f.property === 'event:goal')) return [...GOAL_METRICS, ...(currency ? REVENUE_METRICS : [])];
  if (filters.some(f => EVENT_LEVEL.test(f.property))) return ['visitors', 'events'];
  if (filters.some(f => f.property === 'event:page')) return HEADLINE.filter(m => m !== 'views_per_visit');
  return HEADLINE;
}

function filterValue(filter) {
  if (filter.property === 'visit:country') return countryName(filter.value);
  if (filter.property === 'visit:language') return languageName(filter.value);
  return filter.value;
}

// `view`: {shared, embed} for a shared link's page (sharepage.js): no sign-out and no
// site picker, and for an embed no header at all.
export function mountDashboard(root, who, onSignOut, view = {}) {
  setProperties(who.properties);
  setMetrics(who.metrics);
  const sites = who.sites;
  let state = readState(location.search, sites, who.zones);
  let generation = 0;
  let controller = null;
  let visitorsBeforeEvents = null;
  let ownVisitorsBeforeEvents = null;
  let chartData = null;
  let undraw = () => {};

  // --- the skeleton -------------------------------------------------------------------

  const chooseSite = site => navigate({site, zone: zoneOf(who.zones, site), filters: []});
  const siteSelect = h('select', {id: 'site', onchange: e => chooseSite(e.target.value)},
    sites.map(s => h('option', {value: s}, s)));
  const realtime = h('span', {className: 'realtime-count'}, '–');
  const realtimeNoun = h('span', {}, ' current visitors');
  const realtimeClock = h('time', {className: 'realtime-clock'});
  const header = h('header', {className: 'top'},
    h('div', {className: 'brand'}, h('span', {className: 'logo', 'aria-hidden': 'true'}), h('span', {className: 'brand-name'}, 'beacon')),
    view.shared
      ? h('p', {className: 'site-name'}, sites[0] ?? '')
      : h('label', {className: 'site-picker', for: 'site'}, h('span', {className: 'visually-hidden'}, 'Site'), siteSelect),
    h('p', {className: 'realtime', title: 'Visitors in the last 5 minutes'},
      h('span', {className: 'pulse', 'aria-hidden': 'true'}), realtime, realtimeNoun, realtimeClock),
    view.shared ? null : accountMenu(who),
    view.shared ? null : h('button', {type: 'button', className: 'sign-out', onclick: signOut}, 'Sign out'));

  const periodSelect = h('select', {'aria-label': 'Period', className: 'period-select', onchange: choosePeriod},
    PERIODS.map(([name, label]) => h('option', {value: name}, label)));
  const previous = h('button', {type: 'button', className: 'step', 'aria-label': 'Previous period', onclick: () => step(-1)}, '‹');
  const next = h('button', {type: 'button', className: 'step', 'aria-label': 'Next period', onclick: () => step(1)}, '›');
  const rangeText = h('span', {className: 'range'});
  const zoneText = h('p', {className: 'zone'});
  const zoneChange = h('p', {className: 'notice zone-change', hidden: true});
  const from = h('input', {type: 'date', id: 'from'});
  const to = h('input', {type: 'date', id: 'to'});
  const custom = h('form', {className: 'custom', hidden: true, onsubmit: applyCustom},
    h('label', {for: 'from'}, 'From'), from, h('label', {for: 'to'}, 'to'), to,
    h('button', {type: 'submit'}, 'Apply'));
  const compare = h('input', {type: 'checkbox', id: 'compare', onchange: e => navigate({compare: e.target.checked})});
  // Shown for a site with figures imported from another product's archive (beacon import plausible).
  const imports = h('input', {type: 'checkbox', id: 'imports', onchange: e => navigate({imports: e.target.checked})});
  const importsLabel = h('label', {for: 'imports'});
  const importsToggle = h('div', {className: 'compare imports', hidden: true}, imports, importsLabel);
  // For an admin of the site: the period's own figures as Plausible's CSV archive (dashboard/archive_export.py).
  const archiveExport = h('a', {className: 'archive-export', hidden: true, download: ''}, 'Export as Plausible archive');
  // And an archive imported: checked whole by the server, which says what it imported or why not.
  const archiveFile = h('input', {type: 'file', id: 'archive-file', accept: '.zip,application/zip', required: true});
  const archiveReplace = h('input', {type: 'checkbox', id: 'archive-replace'});
  const archiveStatus = h('p', {className: 'archive-status', role: 'status'});
  const archiveImport = h('details', {className: 'archive-import', hidden: true},
    h('summary', {}, 'Import a Plausible archive'),
    h('form', {onsubmit: importChosenArchive},
      h('label', {for: 'archive-file'}, 'Archive (zip of imported_*.csv)'), archiveFile,
      h('div', {}, archiveReplace, h('label', {for: 'archive-replace'}, 'Replace earlier imports')),
      h('button', {type: 'submit'}, 'Import'),
      archiveStatus));
  const controls = h('div', {className: 'controls'},
    h('div', {className: 'period'}, previous, periodSelect, next, rangeText),
    custom,
    h('div', {className: 'compare'}, compare, h('label', {for: 'compare'}, 'Compare with previous period')),
    importsToggle,
    archiveExport,
    archiveImport,
    zoneText);
  const chips = h('ul', {className: 'chips', 'aria-label': 'Active filters'});
  const install = h('div', {className: 'notice install', hidden: true});
  const tiles = h('ul', {className: 'tiles'});
  const chart = h('div', {className: 'chart', role: 'img'});
  const panels = PANELS.map(def => createPanel(def, {
    query, goals: () => who.goals?.[state.site] ?? [], filters: () => state.filters,
    goalMode: goalFiltered, currency: goalCurrency,
    filter: (property, value) => navigate({filters: withFilter(state.filters, property, value)}),
    // One count per view, shared by the panels; tied to the view, not to the panel that asked first.
    visitorsBeforeEvents: () => (visitorsBeforeEvents ??= countVisitorsBeforeEvents(controller.signal)),
    // The site's own visitors: a view answered without its imports is measured against them.
    ownVisitorsBeforeEvents: () => (ownVisitorsBeforeEvents ??= countVisitorsBeforeEvents(controller.signal, true)),
    fileStem,
  }));
  const funnel = createFunnelPanel({query, funnels: () => who.funnels?.[state.site] ?? []});
  const title = h('h1', {className: 'visually-hidden'});
  const main = h('main', {dataset: {state: 'loading', renders: '0'}},
    title, controls, zoneChange, chips, install,
    h('section', {className: 'summary', 'aria-label': 'Summary'}, tiles, chart),
    h('div', {className: 'grid'}, panels.map(p => p.element), funnel.element),
    who.can_share ? createSharesPanel(who.share_sites) : null);
  if (view.embed) main.classList.add('embedded');
  replaceChildren(root, ...(view.embed ? [main] : [header, main]));

  if (!sites.length) {
    replaceChildren(main, h('div', {className: 'notice install'},
      h('h1', {}, 'No site yet'),
      h('p', {}, 'Register the site whose visits beacon counts, then reload this page:'),
      h('pre', {}, h('code', {}, 'beacon sites add example.com'))));
    return () => {};
  }

  // --- changing the view ----------------------------------------------------------------

  function navigate(changes) {
    state = {...state, ...changes, periodChosen: true};
    history.pushState(null, '', `${location.pathname}?${writeState(state)}${view.embed ? '&embed=true' : ''}`);
    load();
  }

  function step(direction) {
    const moved = shift(state, direction);
    if (moved) navigate({date: moved.date});
  }

  function choosePeriod(event) {
    if (event.target.value === 'custom') {
      const {first, last} = range(state);
      [from.value, to.value] = [first, last];
      custom.hidden = false;
      from.focus();
      return;
    }
    navigate({period: event.target.value, date: ''});
  }

  function applyCustom(event) {
    event.preventDefault();
    if (!from.value || !to.value || to.value < from.value) return;
    navigate({period: 'custom', date: `${from.value},${to.value}`});
  }

  async function signOut() {
    await session.signOut().catch(() => null);
    onSignOut();
  }

  const onPopState = () => {
    state = readState(location.search, sites, who.zones);
    load();
  };
  addEventListener('popstate', onPopState);

  // --- what the API is asked ----------------------------------------------------------

  // The currency of the revenue goal the page is filtered on ('' for any other filter):
  // the API sums revenue under one goal's currency only.
  function goalCurrency() {
    const goal = state.filters.find(f => f.property === 'event:goal' && f.op === '==');
    return (goal && who.currencies?.[state.site]?.[goal.value]) || '';
  }

  async function importChosenArchive(event) {
    event.preventDefault();
    const [file] = archiveFile.files;
    archiveStatus.textContent = 'Importing…';
    try {
      const done = await importArchive(state.site, file, archiveReplace.checked);
      who.imported = (await session.current()).imported;  // the toggle now offers the imported days
      archiveStatus.textContent = `Imported ${done.first} – ${done.last}.`;
      navigate({imports: true});
    } catch (error) {
      archiveStatus.textContent = error.message;
    }
  }

  function query() {
    return {site_id: state.site, ...periodParams(state), filters: filtersParam(state.filters),
      with_imported: importedSpan() && state.imports ? 'true' : undefined};
  }

  function importedSpan() {
    return who.imported?.[state.site];
  }

  function fileStem() {
    const {first, last} = range(state);
    return `${state.site}-${first}-${last}`;
  }

  async function countVisitorsBeforeEvents(signal, own = false) {
    const filters = state.filters.filter(f => !EVENT_LEVEL.test(f.property));
    const asked = {...query(), filters: filtersParam(filters), metrics: 'visitors'};
    if (own) delete asked.with_imported;
    const result = await stats('aggregate', asked, signal);
    return result.results.visitors.value;
  }

  // --- loading and drawing --------------------------------------------------------------

  async function load() {
    const mine = ++generation;
    controller?.abort();
    controller = new AbortController();
    const {signal} = controller;
    visitorsBeforeEvents = null;
    ownVisitorsBeforeEvents = null;
    main.dataset.state = 'loading';
    showControls();
    const work = [loadSummary(signal), loadChart(signal), ...panels.map(p => p.load()), funnel.load()];
    await Promise.allSettled(work);
    if (mine !== generation) return;
    performance.mark('dashboard:rendered');
    main.dataset.renders = String(Number(main.dataset.renders) + 1);
    main.dataset.state = 'ready';
    // After the panels: the store answers one query at a time, and the panels come first.
    if (state.site !== realtimeSite && !view.embed) refreshRealtime(); // an embed has no header to show it in
  }

  function showControls() {
    siteSelect.value = state.site;
    title.textContent = `Dashboard of ${state.site}`;
    document.title = `${state.site} · beacon`;
    periodSelect.value = state.period;
    custom.hidden = state.period !== 'custom';
    if (state.period === 'custom') [from.value, to.value] = state.date.split(',');
    compare.checked = state.compare;
    const span = importedSpan();
    importsToggle.hidden = !span;
    imports.checked = Boolean(span) && state.imports;
    importsLabel.textContent = span ? `Include imported data (${formatDay(span[0], true)} – ${formatDay(span[1], true)})` : '';
    const {first, last} = range(state);
    const administered = Boolean(who.share_sites?.includes(state.site));
    archiveExport.hidden = archiveImport.hidden = !administered;
    // Only an admin's page has the link at all (a shared page, an embed above all, links nowhere).
    if (administered) {
      archiveExport.href = `/dashboard/export/plausible?${new URLSearchParams({site: state.site, from: first, to: last})}`;
    } else {
      archiveExport.removeAttribute('href');
    }
    const day = dayName(state);
    periodSelect.querySelector('option[value=day]').textContent = day ?? 'Day';
    rangeText.textContent = first === last ? formatDay(first, true) : `${formatDay(first)} – ${formatDay(last, true)}`;
    next.disabled = shift(state, 1) === null;
    from.max = to.max = today(state.zone);
    showZone(first);
    replaceChildren(chips, state.filters.map(f => {
      const label = `${PROPERTY_NAMES[f.property] ?? f.property} ${OPERATOR_WORDS[f.op]} ${filterValue(f)}`;
      return h('li', {className: 'chip'}, h('span', {}, label), h('button', {
        type: 'button', 'aria-label': `Remove filter: ${label}`,
        onclick: () => navigate({filters: state.filters.filter(g => g !== f)}),
      }, '×'));
    }));
  }

  // The zone the figures are cut in; after a change of zone, a period starting before
  // the first day cut in the new one says that its earlier days keep the old cut.
  function showZone(first) {
    const {timezone_from: since} = who.zones?.[state.site] ?? {};
    const offset = formatOffset(offsetIn(state.zone));
    zoneText.textContent = offset === state.zone ? `Times in ${offset}` : `Times in ${state.zone} (${offset})`;
    zoneChange.hidden = !since || first >= since;
    zoneChange.textContent = zoneChange.hidden ? '' : `Figures before ${formatDay(since, true)} are cut in the ` +
      `previous time zone: when this site moved to ${state.zone}, only the days whose raw events were still kept ` +
      'could be counted again in it.';
  }

  async function loadSummary(signal) {
    const metrics = headlineMetrics(state.filters, goalCurrency());
    tiles.setAttribute('aria-busy', 'true');
    try {
      const result = await stats('aggregate', {...query(), metrics: metrics.join(','), compare: 'previous_period'}, signal);
      drawTiles(metrics, result.results);
      await explainAnEmptyPeriod(result.results, signal);
    } catch (error) {
      if (!signal.aborted) replaceChildren(tiles, h('li', {className: 'notice error'}, `Could not load the summary: ${error.message}`));
    } finally {
      if (!signal.aborted) tiles.removeAttribute('aria-busy');
    }
  }

  function goalFiltered() {
    return state.filters.some(f => f.property === 'event:goal');
  }

  function drawTiles(metrics, results) {
    const goal = goalFiltered();
    replaceChildren(tiles, metrics.map(metric => {
      const {value, change} = results[metric] ?? {};
      const better = change == null || change === 0 ? 'same' : (change > 0) !== lowerIsBetter(metric) ? 'better' : 'worse';
      return h('li', {}, h('button', {
        type: 'button', className: 'tile', 'aria-pressed': String(metric === chartMetric()),
        dataset: {metric}, onclick: () => navigate({metric}),
      },
      h('span', {className: 'tile-label'}, tileLabel(metric, goal)),
      h('span', {className: 'tile-value', dataset: {value: value ?? ''}}, formatMetric(metric, value, goalCurrency())),
      h('span', {className: `tile-change ${better}`, title: 'Change against the previous period'},
        formatChange(metric, change) || '\u00a0')));
    }));
  }

  // A period without visits: today's, when there are some (a new site's first visits
  // are all today's, and "Last 30 days" ends yesterday), else how to install the script.
  async function explainAnEmptyPeriod(results, signal) {
    install.hidden = true;
    if (results.visitors?.value || results.pageviews?.value || state.filters.length) return;
    const visitorsToday = range(state).last < today(state.zone) ? await countVisitorsToday(signal) : 0;
    if (signal.aborted) return;
    if (visitorsToday && !state.periodChosen) {
      openOnToday();
      return;
    }
    replaceChildren(install, ...(visitorsToday ? todayHint(visitorsToday) : installHint()));
    install.hidden = false;
  }

  async function countVisitorsToday(signal) {
    const result = await stats('aggregate', {site_id: state.site, period: 'day', date: today(state.zone),
      metrics: 'visitors'}, signal);
    return result.results.visitors.value;
  }

  // The first view of a site whose visits are all from today shows today; the URL
  // then says so, and any other period stays one choice away.
  function openOnToday() {
    state = {...state, period: 'day', date: '', periodChosen: true};
    history.replaceState(null, '', `${location.pathname}?${writeState(state)}`);
    queueMicrotask(load);
  }

  function todayHint(visitorsToday) {
    return [
      h('h2', {}, `No visits recorded for ${state.site} in this period`),
      h('p', {}, `Today: ${counted(visitorsToday, 'visitor')}. This period ends before today.`),
      h('button', {type: 'button', className: 'show-today', onclick: () => navigate({period: 'day', date: ''})},
        'Show today'),
    ];
  }

  function installHint() {
    const local = LOCAL_HOST.test(location.hostname);
    const allowLocal = local ? ' data-allow-local' : '';
    const snippet = `<script defer data-site="${state.site}"${allowLocal} src="${location.origin}/beacon.js"></script>`;
    return [
      h('h2', {}, `No visits recorded for ${state.site} in this period`),
      h('p', {}, "If the site doesn't send them yet, add this line to the <head> of its pages:"),
      // Focusable: on a narrow screen the line scrolls, and keyboards must reach it.
      h('pre', {tabindex: '0'}, h('code', {}, snippet)),
      local ? h('p', {}, 'data-allow-local lets pages on localhost send visits (the script ignores local pages ' +
        'without it); leave it out on a public site.') : null,
      h('p', {}, 'Visits show here a few seconds after they happen. Pick a longer period to look further back.'),
    ];
  }

  function chartMetric() {
    const metrics = headlineMetrics(state.filters, goalCurrency()).filter(m => m !== 'conversion_rate');
    return metrics.includes(state.metric) ? state.metric : metrics[0];
  }

  async function loadChart(signal) {
    const metric = chartMetric();
    const every = interval(state);
    const params = {...query(), metrics: metric, interval: every === 'hour' ? undefined : every};
    const before = shift(state, -1);
    try {
      const [current, earlier] = await Promise.all([
        stats('timeseries', params, signal),
        state.compare ? stats('timeseries', {...params, ...periodParams(before)}, signal) : null,
      ]);
      // A bucket still to come has no data yet: a gap, not a zero.
      const now = new Date();
      chartData = {
        metric, label: tileLabel(metric, goalFiltered()), interval: every,
        points: current.results.map(r => ({
          date: r.date, value: isFuture(r.date, every, state.zone, now) ? null : r[metric]})),
        previous: earlier ? alignPrevious(current.results, earlier.results, every, metric) : null,
      };
      drawCurrentChart();
    } catch (error) {
      if (!signal.aborted) replaceChildren(chart, h('p', {className: 'notice error'}, `Could not load the chart: ${error.message}`));
    }
  }

  // The previous period's values under the current one's buckets: by position, except
  // hours, which go by the hour of the day, so that a day of 23 or 25 hours lines up
  // with a day of 24 (both of a repeated hour face the one of the day before).
  function alignPrevious(currentRows, previousRows, every, metric) {
    if (every !== 'hour') return previousRows.map(r => r[metric]);
    const byHour = new Map();
    for (const r of previousRows) if (!byHour.has(r.date.slice(11, 13))) byHour.set(r.date.slice(11, 13), r[metric]);
    return currentRows.map(r => byHour.get(r.date.slice(11, 13)) ?? null);
  }

  function drawCurrentChart() {
    undraw();
    const {metric, label, points} = chartData;
    const known = points.filter(p => p.value != null);
    const total = known.reduce((sum, p) => sum + p.value, 0);
    chart.setAttribute('aria-label', `${label} per ${chartData.interval === 'date' ? 'day' : chartData.interval}` +
      (isCount(metric) ? `, ${known.length} points, sum ${formatMetric(metric, total)}` : ''));
    undraw = drawChart(chart, chartData);
  }

  // Colours are read when drawing: redraw when the system switches light/dark.
  const scheme = matchMedia('(prefers-color-scheme: dark)');
  const onScheme = () => chartData && drawCurrentChart();
  scheme.addEventListener('change', onScheme);

  // --- realtime -----------------------------------------------------------------------

  let realtimeSite = null;
  async function refreshRealtime() {
    if (document.hidden) return;
    const site = state.site;
    try {
      const count = await stats('realtime/visitors', {site_id: site});
      if (site === state.site) {
        [realtime.textContent, realtimeSite] = [formatMetric('visitors', count), site];
        realtimeNoun.textContent = count === 1 ? ' current visitor' : ' current visitors';
        showRealtimeClock();
      }
    } catch {
      realtime.textContent = '–';
    }
  }
  // "Now" on the site's clock: the count is of the 5 minutes up to it.
  function showRealtimeClock() {
    const now = new Date();
    realtimeClock.dateTime = now.toISOString();
    const time = timeIn(state.zone, now);
    realtimeClock.textContent = ` · ${time}`;
    realtimeClock.parentElement.title = `Visitors in the last 5 minutes, to ${time} in ${state.zone}`;
  }
  const timer = view.embed ? null : setInterval(refreshRealtime, REALTIME_EVERY_MS);
  load();

  return () => {
    clearInterval(timer);
    removeEventListener('popstate', onPopState);
    scheme.removeEventListener('change', onScheme);
    controller?.abort();
    undraw();
  };
}
