// How names and dates read on the page (a metric's values: metrics.js). Dates are UTC
// days, as the API counts them.

const regions = typeof Intl.DisplayNames === 'function' ? new Intl.DisplayNames(['en'], {type: 'region'}) : null;
const languages = typeof Intl.DisplayNames === 'function' ? new Intl.DisplayNames(['en'], {type: 'language'}) : null;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

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
