// What a table costs in workerd (a Cloudflare Worker's runtime, through
// miniflare): the workerd process's resident memory with the snapshot bound
// as a Data module, after a Router is made of it, and after a base swap (a
// second Router made while the first serves, then the first freed). workerd
// does not enforce a Worker's 128 MB locally; the growth is the isolate's.
// node benches/js/workerd-memory.mjs SNAPSHOT
import { execSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { build } from '../../examples/cloudflare-worker/node_modules/esbuild/lib/main.js';
import { Miniflare } from '../../examples/cloudflare-worker/node_modules/miniflare/dist/src/index.js';

const root = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'edgeroute-workerd-memory-'));
writeFileSync(
  join(dir, 'worker.js'),
  `import wasm from '${root}edge-js/pkg/edgeroute_edge_js_bg.wasm';
import { initModule, Router } from '${root}edge-js/pkg/index.js';
initModule(wasm);
let router = null;
export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path === '/load') router = Router.fromBytes(env.SNAPSHOT);
    if (path === '/swap') { const next = Router.fromBytes(env.SNAPSHOT); router.free(); router = next; }
    return new Response(router ? String(router.routes) : 'none');
  },
};
`,
);
await build({
  entryPoints: [join(dir, 'worker.js')],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  outdir: join(dir, 'out'),
  loader: { '.wasm': 'copy' },
  external: ['node:fs/promises'],
  logLevel: 'error',
});
const mf = new Miniflare({
  modules: true,
  scriptPath: join(dir, 'out/worker.js'),
  modulesRoot: join(dir, 'out'),
  modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
  compatibilityDate: '2025-09-01',
  dataBlobBindings: { SNAPSHOT: process.argv[2] },
});
await mf.ready;
const rss = () =>
  execSync('pgrep -x workerd')
    .toString()
    .trim()
    .split('\n')
    .map((pid) => Number(execSync(`ps -o rss= -p ${pid}`).toString()) / 1024)
    .reduce((a, b) => a + b, 0);
const step = async (path) => (await mf.dispatchFetch(`http://bench${path}`)).text();
await step('/idle');
const idle = rss();
const routes = await step('/load');
const loaded = rss();
await step('/swap');
const swapped = rss();
console.log(
  `${routes} routes: workerd ${idle.toFixed(1)} MB with the snapshot bound, ${loaded.toFixed(1)} MB serving it ` +
    `(+${(loaded - idle).toFixed(1)}), ${swapped.toFixed(1)} MB after a base swap (+${(swapped - idle).toFixed(1)})`,
);
await mf.dispose();
