// A site's clock. The Stats API cuts a site's days, hours and months in the site's
// IANA time zone (`beacon sites add --timezone`), so the page reads "now" there too:
// never in the browser's zone, nor in UTC.

const formats = new Map();

// The fields of the instant `at` on the zone's wall clock, offset included ("GMT-05:00").
function wallClock(zone, at) {
  let format = formats.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', timeZoneName: 'longOffset',
    });
    formats.set(zone, format);
  }
  return Object.fromEntries(format.formatToParts(at).map(part => [part.type, part.value]));
}

// The zone's date at `at`, as 'YYYY-MM-DD'.
export function dayIn(zone, at = new Date()) {
  const {year, month, day} = wallClock(zone, at);
  return `${year}-${month}-${day}`;
}

// The zone's time of day at `at`, as 'HH:MM'.
export function timeIn(zone, at = new Date()) {
  const {hour, minute} = wallClock(zone, at);
  return `${hour}:${minute}`;
}

// The zone's UTC offset at `at`, as '-05:00' ('+00:00' for UTC itself).
export function offsetIn(zone, at = new Date()) {
  const offset = wallClock(zone, at).timeZoneName.replace('GMT', '');
  return offset || '+00:00';
}

// Whether the timeseries bucket the API labels `label` starts after `at`: a bucket
// still to come has no data yet. An hour the clock goes through twice carries its UTC
// offset ('2026-11-01 01:00:00-05:00'), which makes it an instant; any other hour is
// compared on the site's wall clock.
export function isFuture(label, interval, zone, at = new Date()) {
  const today = dayIn(zone, at);
  if (interval === 'month') return label > `${today.slice(0, 7)}-01`;
  if (interval !== 'hour') return label > today;
  if (label.length > 19) return Date.parse(`${label.slice(0, 10)}T${label.slice(11)}`) > at.getTime();
  return label > `${today} ${wallClock(zone, at).hour}:00:00`;
}
