// The whole view lives in the URL (?site=…&period=…&date=…&filters=…&metric=…&compare=1&imports=1),
// so that a view can be bookmarked and shared. It never holds the token.
//
// Periods as the Stats API computes them (api/stats_params.py), in the site's days: a
// site's days, and its "today", are those of its time zone (state.zone; zone.js).
//   day      the day of `date`
//   7d, 30d  the 7 or 30 days before `date`, `date` excluded
//   month    the calendar month of `date`
//   6mo/12mo from the 1st of the month 5 (11) months before to the end of date's month
//   custom   date=FIRST,LAST, both included
import {HEADLINE} from './metrics.js';
import {dayIn} from './zone.js';

export const PERIODS = [
  ['day', 'Today'],
  ['7d', 'Last 7 days'],
  ['30d', 'Last 30 days'],
  ['month', 'Month to date'],
  ['6mo', 'Last 6 months'],
  ['12mo', 'Last 12 months'],
  ['custom', 'Custom range'],
];
const PERIOD_NAMES = PERIODS.map(([name]) => name);
const DAY = /^\d{4}-\d{2}-\d{2}$/;

// --- days as 'YYYY-MM-DD' strings ------------------------------------------------------

export function today(zone) {
  return dayIn(zone);
}

function toDate(day) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d));
}

function fromDate(date) {
  return date.toISOString().slice(0, 10);
}

export function addDays(day, days) {
  const date = toDate(day);
  date.setUTCDate(date.getUTCDate() + days);
  return fromDate(date);
}

function addMonths(day, months) {
  const date = toDate(day);
  return fromDate(new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + months, 1)));
}

function firstOfMonth(day) {
  return day.slice(0, 8) + '01';
}

function lastOfMonth(day) {
  return addDays(addMonths(day, 1), -1);
}

export function daysBetween(first, last) {
  return Math.round((toDate(last) - toDate(first)) / 86400000);
}

// --- the state ---------------------------------------------------------------------

// `zones`: each site's {timezone}, as /dashboard/session gives them.
export function readState(search, sites, zones) {
  const params = new URLSearchParams(search);
  const site = sites.includes(params.get('site')) ? params.get('site') : sites[0] ?? null;
  let period = PERIOD_NAMES.includes(params.get('period')) ? params.get('period') : '30d';
  let date = params.get('date') ?? '';
  if (period === 'custom') {
    const [first, last] = date.split(',');
    if (!DAY.test(first ?? '') || !DAY.test(last ?? '') || last < first) [period, date] = ['30d', ''];
  } else if (!DAY.test(date)) {
    date = '';
  }
  const metric = HEADLINE.includes(params.get('metric')) ? params.get('metric') : 'visitors';
  // periodChosen: false on a first visit (no period in the URL), whose period the page may pick.
  return {site, zone: zoneOf(zones, site), period, date, filters: parseFilters(params.get('filters') ?? ''), metric,
    compare: params.get('compare') === '1', imports: params.get('imports') === '1', periodChosen: params.has('period')};
}

export function zoneOf(zones, site) {
  return zones?.[site]?.timezone ?? 'UTC';
}

export function writeState(state) {
  const params = new URLSearchParams();
  if (state.site) params.set('site', state.site);
  params.set('period', state.period);
  if (state.date) params.set('date', state.date);
  if (state.filters.length) params.set('filters', filtersParam(state.filters));
  if (state.metric !== 'visitors') params.set('metric', state.metric);
  if (state.compare) params.set('compare', '1');
  if (state.imports) params.set('imports', '1');
  return params.toString();
}

// The first and last day the period covers.
export function range(state) {
  if (state.period === 'custom') {
    const [first, last] = state.date.split(',');
    return {first, last};
  }
  const anchor = state.date || today(state.zone);
  switch (state.period) {
    case 'day': return {first: anchor, last: anchor};
    case '7d': return {first: addDays(anchor, -7), last: addDays(anchor, -1)};
    case '30d': return {first: addDays(anchor, -30), last: addDays(anchor, -1)};
    case 'month': return {first: firstOfMonth(anchor), last: lastOfMonth(anchor)};
    default: {
      const back = state.period === '6mo' ? 5 : 11;
      return {first: addMonths(anchor, -back), last: lastOfMonth(anchor)};
    }
  }
}

// What a one-day period is to the site: 'Today', 'Yesterday', or null for another day.
export function dayName(state) {
  if (state.period !== 'day') return null;
  const {first} = range(state);
  const now = today(state.zone);
  return first === now ? 'Today' : first === addDays(now, -1) ? 'Yesterday' : null;
}

// The period one step earlier (-1) or later (+1); null when that would be the future.
export function shift(state, direction) {
  if (state.period === 'custom') {
    const {first, last} = range(state);
    const length = daysBetween(first, last) + 1;
    const next = {...state, date: `${addDays(first, direction * length)},${addDays(last, direction * length)}`};
    return direction > 0 && range(next).first > today(state.zone) ? null : next;
  }
  if (direction > 0 && !state.date) return null; // already the present
  const now = today(state.zone);
  const anchor = state.date || now;
  const days = {day: 1, '7d': 7, '30d': 30}[state.period];
  const date = days ? addDays(anchor, direction * days)
    : addMonths(anchor, direction * {month: 1, '6mo': 6, '12mo': 12}[state.period]);
  // Back at the present, the URL says "now" (no date), which moves with the calendar.
  const present = days ? date >= now : date >= firstOfMonth(now);
  return {...state, date: present ? '' : date};
}

// The API's parameters for the state's period (and those of the period before it).
// The present is sent as the site's date the page shows, so that the figures are
// those of the days named on the page.
export function periodParams(state) {
  return {period: state.period, date: state.date || today(state.zone)};
}

export function previousPeriodParams(state) {
  const {first, last} = range(state);
  const length = daysBetween(first, last) + 1;
  if (state.period === 'day') return {period: 'day', date: addDays(first, -1)};
  return {period: 'custom', date: `${addDays(first, -length)},${addDays(first, -1)}`};
}

export function interval(state) {
  if (state.period === 'day') return 'hour';
  return state.period === '6mo' || state.period === '12mo' ? 'month' : 'date';
}

// --- filters -----------------------------------------------------------------------

const OPERATORS = ['!=', '==', '~'];

export function filtersParam(filters) {
  return filters.map(f => `${f.property}${f.op}${f.value.replaceAll('|', '\\|')}`).join(';');
}

export function parseFilters(text) {
  const filters = [];
  for (const part of text.split(/(?<!\\);/)) {
    const found = OPERATORS.map(op => [part.indexOf(op), op]).filter(([at]) => at > 0).sort((a, b) => a[0] - b[0]);
    if (!found.length) continue;
    const [at, op] = found[0];
    const value = part.slice(at + op.length).replaceAll('\\|', '|');
    if (value) filters.push({property: part.slice(0, at).trim(), op, value});
  }
  return filters;
}

// The filters with one on `property` set to `value` (replacing one on the same property).
export function withFilter(filters, property, value) {
  return [...filters.filter(f => f.property !== property), {property, op: '==', value}];
}
