// Builds what the collector serves: src/beacon.js minified by the pinned esbuild into
// collector/static/beacon.js, and its brotli form beacon.<version>.js.br (Python's
// standard library has gzip but no brotli, so it is made here). The version in its
// name is the start of the script's SHA-256, as collector/tracker_script.py computes
// it: a brotli file left from another build is never served for this script. Both
// files are committed; tests/test_tracker_build.py checks they equal a fresh build.
//
//   node build.mjs [--out DIR]     (default DIR: ../collector/static)
import {buildSync} from 'esbuild';
import {createHash} from 'node:crypto';
import {mkdirSync, readdirSync, rmSync, writeFileSync} from 'node:fs';
import {dirname, join, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';
import {brotliCompressSync, constants, gzipSync} from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const flag = process.argv.indexOf('--out');
const out = flag > 0 ? resolve(process.argv[flag + 1]) : join(here, '..', 'collector', 'static');

const result = buildSync({
  entryPoints: [join(here, 'src', 'beacon.js')],
  bundle: false,
  minify: true,
  legalComments: 'none',
  target: 'es2017',
  charset: 'utf8',
  write: false,
});
const script = Buffer.from(result.outputFiles[0].contents);
const brotli = brotliCompressSync(script, {
  params: {
    [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
    [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
    [constants.BROTLI_PARAM_SIZE_HINT]: script.length,
  },
});

const version = createHash('sha256').update(script).digest('hex').slice(0, 12);

mkdirSync(out, {recursive: true});
for (const old of readdirSync(out).filter((name) => /^beacon\.[0-9a-f]+\.js\.br$/.test(name))) {
  rmSync(join(out, old));
}
writeFileSync(join(out, 'beacon.js'), script);
writeFileSync(join(out, `beacon.${version}.js.br`), brotli);
const gzipped = gzipSync(script, {level: 9}).length;
console.log(`beacon.js ${version}: ${script.length} bytes, ${gzipped} gzipped, ${brotli.length} brotli -> ${out}`);
