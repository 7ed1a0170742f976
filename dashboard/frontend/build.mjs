// Builds what /dashboard serves into ../static/ (committed; tests/test_dashboard_build.py
// checks that it equals a fresh build from the lockfile):
//
//   world.json      country outlines, projected (Equal Earth) into SVG paths here, from
//                   Natural Earth's world-atlas: the page needs no map library
//   dashboard.js    src/main.js and uPlot, bundled and minified by the pinned esbuild
//   dashboard.css   src/styles.css and uPlot's styles
//   icon.svg        the page's icon
//   index.html      src/index.html naming each file with its version (?v=<sha-256 prefix>,
//                   as dashboard/assets.py computes it), so browsers may cache them for good
//
//   node build.mjs [--out DIR]
import {buildSync} from 'esbuild';
import {createHash} from 'node:crypto';
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs';
import {dirname, join, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';
import {gzipSync} from 'node:zlib';
import {geoEqualEarth, geoPath} from 'd3-geo';
import countries from 'i18n-iso-countries';
import {feature} from 'topojson-client';

const here = dirname(fileURLToPath(import.meta.url));
const flag = process.argv.indexOf('--out');
const out = flag > 0 ? resolve(process.argv[flag + 1]) : join(here, '..', 'static');
const ASSETS = '/dashboard/assets/';
const MAP_WIDTH = 960;
const MAP_HEIGHT = 470;
// Natural Earth shapes without an ISO 3166 numeric code; Kosovo has a user-assigned alpha-2.
const NO_NUMERIC_CODE = {Kosovo: 'XK'};

const version = bytes => createHash('sha256').update(bytes).digest('hex').slice(0, 12);
const url = (name, bytes) => `${ASSETS}${name}?v=${version(bytes)}`;

function worldMap() {
  const atlas = JSON.parse(readFileSync(join(here, 'node_modules', 'world-atlas', 'countries-110m.json'), 'utf8'));
  const shapes = feature(atlas, atlas.objects.countries).features
    .map(f => [f.id ? countries.numericToAlpha2(f.id) : NO_NUMERIC_CODE[f.properties.name], f])
    .filter(([code]) => code && code !== 'AQ'); // Antarctica: no visitors, a fifth of the height
  const projection = geoEqualEarth().fitSize([MAP_WIDTH, MAP_HEIGHT], {
    type: 'FeatureCollection', features: shapes.map(([, f]) => f),
  });
  const path = geoPath(projection).digits(1);
  const paths = shapes.map(([code, f]) => [code, path(f)]).sort((a, b) => a[0].localeCompare(b[0]));
  return Buffer.from(JSON.stringify({width: MAP_WIDTH, height: MAP_HEIGHT, countries: paths}));
}

function bundle(entry, options = {}) {
  const result = buildSync({
    entryPoints: [join(here, 'src', entry)],
    bundle: true,
    minify: true,
    legalComments: 'none',
    charset: 'utf8',
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    write: false,
    ...options,
  });
  return Buffer.from(result.outputFiles[0].contents);
}

const map = worldMap();
const script = bundle('main.js', {format: 'iife', define: {__MAP_URL__: JSON.stringify(url('world.json', map))}});
const styles = bundle('styles.css');
const icon = readFileSync(join(here, 'src', 'icon.svg'));
const page = Buffer.from(readFileSync(join(here, 'src', 'index.html'), 'utf8')
  .replace('{{icon.svg}}', url('icon.svg', icon))
  .replace('{{dashboard.css}}', url('dashboard.css', styles))
  .replace('{{dashboard.js}}', url('dashboard.js', script)));

const files = {'world.json': map, 'dashboard.js': script, 'dashboard.css': styles, 'icon.svg': icon, 'index.html': page};
mkdirSync(out, {recursive: true});
for (const [name, bytes] of Object.entries(files)) {
  writeFileSync(join(out, name), bytes);
  console.log(`${name.padEnd(14)} ${String(bytes.length).padStart(7)} bytes, ${String(gzipSync(bytes, {level: 9}).length).padStart(6)} gzipped`);
}
