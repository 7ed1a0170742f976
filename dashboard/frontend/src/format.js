// How numbers read on the page. Dates are UTC days, as the API counts them.

const integer = new Intl.NumberFormat('en-US', {maximumFractionDigits: 0});
const decimal = new Intl.NumberFormat('en-US', {minimumFractionDigits: 2, maximumFractionDigits: 2});
const regions = typeof Intl.DisplayNames === 'function' ? new Intl.DisplayNames(['en'], {type: 'region'}) : null;
const languages = typeof Intl.DisplayNames === 'function' ? new Intl.DisplayNames(['en'], {type: 'language'}) : null;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export function formatMetric(metric, value) {
  if (value == null) return '—';
  switch (metric) {
    case 'views_per_visit': return decimal.format(value);
    case 'bounce_rate': return `${integer.format(value)}%`;
    case 'conversion_rate': return `${Number(value).toFixed(1)}%`;
    case 'visit_duration': return formatDuration(value);
    default: return integer.format(value);
  }
}

export function formatDuration(seconds) {
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
  const unit = metric === 'bounce_rate' || metric === 'conversion_rate' ? ' pts' : '%';
  return `${arrow}${integer.format(Math.abs(change))}${unit}`;
}

export function countryName(code) {
  if (!code || code.length !== 2) return code || '(not set)';
  try {
    return regions?.of(code.toUpperCase()) ?? code;
  } catch {
    return code;
  }
}

export function languageName(tag) {
  if (!tag) return '(not set)';
  try {
    return languages?.of(tag) ?? tag;
  } catch {
    return tag;
  }
}

export function formatDay(day, withYear = false) {
  const [y, m, d] = day.split('-').map(Number);
  return `${MONTHS[m - 1]} ${d}${withYear ? `, ${y}` : ''}`;
}

export function formatMonth(day) {
  const [y, m] = day.split('-').map(Number);
  return `${MONTHS[m - 1]} ${y}`;
}

// A timeseries bucket ("2026-12-03", "2026-12-03 14:00:00", "2026-12-01") as a label.
export function formatBucket(date, interval) {
  if (interval === 'hour') return `${date.slice(11, 13)}:00`;
  if (interval === 'month') return formatMonth(date);
  return formatDay(date);
}
