// What a table costs in memory in Node (as in Lambda@Edge): the process's
// resident memory after loading a snapshot as the Follower does (its bytes
// fetched, then copied into the module), and at the peak of a base swap
// (the old state still serving while the new base loads). Run with
// --expose-gc: node --expose-gc benches/js/memory.mjs SNAPSHOT
import { readFileSync } from 'node:fs';

import { init, Router } from '../../edge-js/pkg/index.js';

const mb = (bytes) => (bytes / 1048576).toFixed(1);
const rss = () => {
  globalThis.gc?.();
  return process.memoryUsage().rss;
};

await init();
const path = process.argv[2];
const idle = rss();
let fetched = readFileSync(path);
const size = fetched.length;
let router = Router.fromBytes(fetched);
const loading = process.memoryUsage().rss;
fetched = null;
const serving = rss();
// A base swap: the new base's bytes fetched and loaded while the old serves.
let next = readFileSync(path);
const swapped = Router.fromBytes(next);
const peak = process.memoryUsage().rss;
next = null;
router.free();
router = swapped;
const after = rss();
console.log(
  `${router.routes} routes, snapshot ${mb(size)} MB: Node idle ${mb(idle)} MB; serving ${mb(serving)} MB ` +
    `(while loading ${mb(loading)}); a base swap peaks at ${mb(peak)} MB, then ${mb(after)} MB`,
);
