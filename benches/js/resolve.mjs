// The cost of one resolve in Node, through the JavaScript package, against
// baselines from the same run: a JavaScript Map lookup of the host (what a
// hand-written router would do, without any of the rules), and the package's
// parts (writing the input and resolving, without decoding the answer).
//
//   node benches/js/resolve.mjs SNAPSHOT QUERIES.txt      (benches/js.sh runs it)
import { readFileSync, statSync } from 'node:fs';

import { init, Router } from '../../edge-js/pkg/index.js';

const [snapshotPath, queriesPath] = process.argv.slice(2);
if (!queriesPath) {
  console.error('usage: node benches/js/resolve.mjs SNAPSHOT QUERIES.txt');
  process.exit(2);
}
await init();
const bytes = readFileSync(snapshotPath);
let t = process.hrtime.bigint();
const router = Router.fromBytes(bytes);
const loadMs = Number(process.hrtime.bigint() - t) / 1e6;
const queries = readFileSync(queriesPath, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((line) => {
    const space = line.indexOf(' ');
    return space < 0 ? [line, '/'] : [line.slice(0, space), line.slice(space + 1)];
  });
const map = new Map(queries.map(([host], i) => [host.toLowerCase(), i]));

/** Nanoseconds per query of `f` over the queries, best of 5 passes after a warm-up. */
function measure(f) {
  let sink = 0;
  for (const [h, p] of queries) sink += f(h, p) ? 1 : 0;
  let best = Infinity;
  for (let pass = 0; pass < 5; pass++) {
    const start = process.hrtime.bigint();
    for (const [h, p] of queries) sink += f(h, p) ? 1 : 0;
    best = Math.min(best, Number(process.hrtime.bigint() - start) / queries.length);
  }
  if (sink < 0) console.log(sink);
  return best;
}

const full = measure((h, p) => router.resolve(h, p));
const mapGet = measure((h) => map.get(h.toLowerCase()));
const size = (f) => statSync(new URL(`../../edge-js/pkg/${f}`, import.meta.url)).size;
console.log(`snapshot: ${router.routes} routes, ${bytes.length} bytes, validated and hashed in ${loadMs.toFixed(1)} ms`);
console.log(`package: module ${size('edgeroute_edge_js_bg.wasm')} bytes, wasm-bindgen glue ${size('edgeroute_edge_js.js')} bytes, ` +
  `index.js + follow.js ${size('index.js') + size('follow.js')} bytes`);
console.log(`${queries.length} queries (hits, wildcards, misses, static paths), ns per query (best of 5 passes):`);
console.log(`  router.resolve(host, path) -> object   ${full.toFixed(0).padStart(6)}`);
console.log(`  Map.get(host) (no rules, no answer)   ${mapGet.toFixed(0).padStart(6)}   resolve / Map.get = ${(full / mapGet).toFixed(1)}x`);
