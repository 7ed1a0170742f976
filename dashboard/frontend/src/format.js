// How names and dates read on the page (a metric's values: metrics.js). Dates are the
// site's days and hours, as the API names them.

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

// A UTC offset ('-05:00', '+05:45', '+00:00') as 'UTC−05:00', 'UTC+05:45', 'UTC'.
export function formatOffset(offset) {
  return offset === '+00:00' ? 'UTC' : `UTC${offset.replace('-', '\u2212')}`;
}

// A timeseries bucket ("2026-12-03", "2026-12-03 14:00:00", "2026-12-01") as a label.
// An hour the clock goes through twice ("2026-11-01 01:00:00-04:00", then "…-05:00")
// keeps its offset, so that the two read apart.
export function formatBucket(date, interval) {
  if (interval === 'hour') {
    return date.length > 19 ? `${date.slice(11, 16)} ${formatOffset(date.slice(19))}` : `${date.slice(11, 13)}:00`;
  }
  if (interval === 'month') return formatMonth(date);
  return formatDay(date);
}
