// Every metric the dashboard shows, in one place: its name in the Stats API, how the
// headline tile and a table column call it, how its values read, and which way is
// better. The headline, the chart, the panels, the map and the CSV export all ask here.

const integer = new Intl.NumberFormat('en-US', {maximumFractionDigits: 0});
const decimal = new Intl.NumberFormat('en-US', {minimumFractionDigits: 2, maximumFractionDigits: 2});

// kind: count (whole numbers), decimal, percent (the API's whole percent), rate (one
// decimal), duration (seconds), money (two decimals, in the revenue goal's currency).
// goal: the tile's name while a goal filters the page; goalColumn, goalShort: a table
// column's then (Plausible's "Conversions" and "CR"). short: a table column's name
// where the column is narrow (375 px screens).
const DEFINITIONS = {
  visitors: {tile: 'Unique visitors', column: 'Visitors', kind: 'count', goal: 'Unique conversions',
    goalColumn: 'Conversions', goalShort: 'Conv.'},
  visits: {tile: 'Total visits', column: 'Visits', kind: 'count'},
  pageviews: {tile: 'Total pageviews', column: 'Pageviews', kind: 'count', short: 'Views'},
  views_per_visit: {tile: 'Views per visit', column: 'Views per visit', kind: 'decimal'},
  bounce_rate: {tile: 'Bounce rate', column: 'Bounce rate', kind: 'percent', lowerIsBetter: true},
  visit_duration: {tile: 'Visit duration', column: 'Visit duration', kind: 'duration'},
  events: {tile: 'Total events', column: 'Events', kind: 'count', goal: 'Total conversions',
    goalColumn: 'Total conversions', goalShort: 'Total'},
  conversion_rate: {tile: 'Conversion rate', column: 'Conversion rate', kind: 'rate', short: 'CR'},
  total_revenue: {tile: 'Total revenue', column: 'Revenue', kind: 'money', short: 'Rev.'},
  average_revenue: {tile: 'Average revenue', column: 'Average revenue', kind: 'money', short: 'Avg. rev.'},
};

// The read side's registry (queries/metrics.py, given with the session) words a metric
// the page has none of its own for: its label for the tile and the column, a narrow
// column's heading, its unit.
const KINDS = {count: 'count', decimal: 'decimal', percent: 'percent', seconds: 'duration'};

export function setMetrics(registry) {
  for (const [name, {label, unit, short}] of Object.entries(registry ?? {})) {
    DEFINITIONS[name] ??= {tile: label, column: label, short, kind: KINDS[unit] ?? 'count'};
  }
}

// The metrics a page breakdown adds when nothing but pages filters it (the API refuses
// engagement with any other filter): time on page and scroll depth, from engagement events.
export const ENGAGEMENT = ['time_on_page', 'scroll_depth'];

// Goal mode: what a breakdown row shows while a goal filters the page (revenue too for
// a revenue goal). The API answers them for every property; nothing else is asked then.
export const GOAL_METRICS = ['visitors', 'events', 'conversion_rate'];
export const REVENUE_METRICS = ['total_revenue', 'average_revenue'];

// The headline's metrics, in order, when no filter narrows what the API allows.
export const HEADLINE = ['visitors', 'visits', 'pageviews', 'views_per_visit', 'bounce_rate', 'visit_duration'];

export function tileLabel(metric, goalFiltered = false) {
  const definition = DEFINITIONS[metric];
  return (goalFiltered && definition.goal) || definition.tile;
}

export function columnLabel(metric, goalMode = false) {
  const definition = DEFINITIONS[metric];
  return (goalMode && definition.goalColumn) || definition.column;
}

// The column's name for narrow screens; the full name when it is short already.
export function shortColumnLabel(metric, goalMode = false) {
  const definition = DEFINITIONS[metric];
  return (goalMode && definition.goalShort) || definition.short || columnLabel(metric, goalMode);
}

export function isCount(metric) {
  return DEFINITIONS[metric]?.kind === 'count';
}

export function lowerIsBetter(metric) {
  return Boolean(DEFINITIONS[metric].lowerIsBetter);
}

// currency: the revenue goal's ISO 4217 code, for money.
export function formatMetric(metric, value, currency = '') {
  if (value == null) return '—';
  switch (DEFINITIONS[metric]?.kind) {
    case 'money': return currency ? new Intl.NumberFormat('en-US', {style: 'currency', currency}).format(value) : decimal.format(value);
    case 'decimal': return decimal.format(value);
    case 'percent': return `${integer.format(value)}%`;
    case 'rate': return `${Number(value).toFixed(1)}%`;
    case 'duration': return formatDuration(value);
    default: return integer.format(value);
  }
}

function formatDuration(seconds) {
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(s).padStart(2, '0')}s`;
  return `${s}s`;
}

// The change against the previous period; for rates the API gives points, not percent.
export function formatChange(metric, change) {
  if (change == null) return '';
  const arrow = change > 0 ? '↑' : change < 0 ? '↓' : '';
  const kind = DEFINITIONS[metric].kind;
  const unit = kind === 'percent' || kind === 'rate' ? ' pts' : '%';
  return `${arrow}${integer.format(Math.abs(change))}${unit}`;
}

// "1 visitor", "2 visitors": a count with its noun.
export function counted(count, noun) {
  return `${integer.format(count)} ${noun}${count === 1 ? '' : 's'}`;
}
