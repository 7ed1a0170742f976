// The world map of the Locations panel: country outlines pre-projected into SVG paths
// at build time (build.mjs, from Natural Earth's world-atlas), served by this app and
// loaded the first time the map is shown. Shades are CSS classes (light and dark).
import {svg} from './dom.js';
import {countryName} from './format.js';
import {counted, formatMetric} from './metrics.js';

/* global __MAP_URL__ */
const SHADES = 5;
let shapes = null;

export function loadShapes() {
  shapes ??= fetch(__MAP_URL__).then(response => {
    if (!response.ok) throw new Error(`map: ${response.status}`);
    return response.json();
  });
  return shapes;
}

// `rows`: [{country, visitors}]; a click on a country with visitors calls `onPick(code)`.
export function drawMap(map, rows, onPick) {
  const visitors = new Map(rows.map(r => [r.country, r.visitors]));
  const most = Math.max(1, ...visitors.values());
  const paths = map.countries.map(([code, d]) => {
    const count = visitors.get(code) ?? 0;
    const shade = count ? 1 + Math.min(SHADES - 1, Math.floor(Math.sqrt(count / most) * SHADES)) : 0;
    return svg('path', {
      d, className: `country shade-${shade}`, dataset: {country: code},
      onclick: count ? () => onPick(code) : null,
    }, svg('title', {}, `${countryName(code)}: ${counted(count, 'visitor')}`));
  });
  const top = rows.slice(0, 3).map(r => `${countryName(r.country)} ${formatMetric('visitors', r.visitors)}`).join(', ');
  return svg('svg', {
    viewBox: `0 0 ${map.width} ${map.height}`, className: 'world-map', role: 'img',
    'aria-label': rows.length ? `World map of visitors by country; most: ${top}` : 'World map: no visitors by country',
  }, paths);
}
