// The Worker in workerd (through miniflare, on 127.0.0.1), bundled by esbuild
// as wrangler bundles it: static sites from a local S3-style server, a local
// upstream behind a load balancer route, redirects, 404s and 400s; and the
// conformance corpus resolved inside workerd, identical to the native answers.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync, statSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';

import { build } from 'esbuild';
import { Miniflare } from 'miniflare';

import { apply, compile, conformance, publish, root, scratch } from '../../../edge-js/test/support.mjs';

const here = join(root, 'examples/cloudflare-worker');
const sites = join(root, 'snapshots/demo-sites');
const servers = [];
let mf;
let s3Requests = [];
let upstream;
let s3;
let routerOptions;

function listen(handler) {
  const server = createServer(handler);
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

/** Bundles `entry` as wrangler would: one ES module, the .wasm and .snap beside it. */
async function bundle(entry, name) {
  const outdir = scratch(`worker-${name}`);
  await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    outdir,
    loader: { '.wasm': 'copy', '.snap': 'copy' },
    assetNames: '[name]-[hash]',
    external: ['node:fs/promises'],
    logLevel: 'error',
  });
  return join(outdir, `${name}.js`);
}

before(async () => {
  // S3, path-style: GET/HEAD /BUCKET/KEY from the demo sites, with ETags; S3's XML errors for the rest.
  s3 = await listen((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    s3Requests.push(`${req.method} ${path}`);
    // A key S3 refuses access to (expired credentials, a policy).
    if (path.includes('denied')) {
      res.writeHead(403, { 'content-type': 'application/xml', 'x-amz-request-id': 'R3' });
      res.end(`<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`);
      return;
    }
    let info;
    try {
      info = statSync(join(sites, path));
      if (!info.isFile()) throw new Error('a folder');
    } catch {
      res.writeHead(404, { 'content-type': 'application/xml', 'x-amz-request-id': 'R1' });
      res.end(`<Error><Code>NoSuchKey</Code><Key>${path}</Key></Error>`);
      return;
    }
    const etag = `"${createHash('md5').update(readFileSync(join(sites, path))).digest('hex')}"`;
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag }).end();
      return;
    }
    const type = path.endsWith('.html') ? 'text/html' : path.endsWith('.js') ? 'text/javascript' : 'application/octet-stream';
    res.writeHead(200, { etag, 'content-type': type, 'x-amz-request-id': 'R2', 'content-length': info.size });
    res.end(req.method === 'HEAD' ? undefined : readFileSync(join(sites, path)));
  });
  // The load balancer's target: echoes what it received.
  upstream = await listen((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes' });
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }));
    });
  });

  // The demo table, its wildcard load balancer pointed at the local upstream.
  const table = readFileSync(join(root, 'snapshots/demo.jsonl'), 'utf8').replace('http://127.0.0.1:9042', `http://127.0.0.1:${upstream}`);
  const [, snapshot] = compile(table);
  copyFileSync(snapshot, join(here, 'routes.snap'));
  const [, conformanceSnap] = compile(conformance()[0]);

  const worker = await bundle(join(here, 'src/index.js'), 'index');
  const checker = await bundle(join(here, 'test/conformance-worker.js'), 'conformance-worker');
  const rules = [
    { type: 'CompiledWasm', include: ['**/*.wasm'] },
    { type: 'Data', include: ['**/*.snap'] },
  ];
  routerOptions = {
    name: 'router',
    modules: true,
    scriptPath: worker,
    modulesRoot: dirname(worker),
    modulesRules: rules,
    compatibilityDate: '2025-09-01',
    bindings: { EDGEROUTE_S3_URL: `http://127.0.0.1:${s3}/{bucket}` },
    routes: ['*'],
  };
  mf = new Miniflare({
    host: '127.0.0.1',
    port: 0,
    workers: [
      routerOptions,
      {
        name: 'conformance',
        modules: true,
        scriptPath: checker,
        modulesRoot: dirname(checker),
        modulesRules: rules,
        compatibilityDate: '2025-09-01',
        dataBlobBindings: { SNAPSHOT: conformanceSnap },
      },
    ],
  });
  await mf.ready;
});

after(async () => {
  await mf?.dispose();
  servers.forEach((s) => s.close());
});

/** A raw HTTP/1.1 request to workerd's listener on 127.0.0.1, with `host` as its Host header. */
async function get(host, path = '/', { method = 'GET', headers = {}, body, via = mf } = {}) {
  const url = await via.ready;
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, method, headers: { host, ...headers }, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const empty = [204, 304].includes(res.statusCode);
        const flat = Object.entries(res.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v]);
        resolve(new Response(empty ? null : Buffer.concat(chunks), { status: res.statusCode, headers: flat }));
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('the conformance corpus, resolved inside workerd, matches the native answers', async () => {
  const conformanceWorker = await mf.getWorker('conformance');
  const cases = conformance()[1];
  const response = await conformanceWorker.fetch('http://check/', { method: 'POST', body: JSON.stringify(cases) });
  const { answers, allocations } = await response.json();
  assert.equal(answers.length, cases.length);
  cases.forEach((c, i) => assert.deepStrictEqual(answers[i], c.expect, `${c.host} ${c.path}`));
  assert.equal(allocations, 0, 'no allocation in the module per resolve');
});

test('static sites: objects, index pages, the SPA fallback, the 404 page, conditional GETs', async () => {
  let r = await get('env-123.example.com', '/about/');
  assert.equal(r.status, 200);
  assert.match(await r.text(), /About/i);
  assert.equal(r.headers.get('x-edgeroute-snapshot')?.length, 12);
  assert.equal(r.headers.get('x-amz-request-id'), null, 'S3\'s own headers are dropped');
  const etag = r.headers.get('etag');

  r = await get('env-123.example.com', '/about/', { headers: { 'if-none-match': etag } });
  assert.equal(r.status, 304);

  r = await get('env-123.example.com', '/no-such-page');
  assert.equal(r.status, 404);
  assert.equal(await r.text(), readFileSync(join(sites, 'acme-static-sites/env-123/404.html'), 'utf8'));

  r = await get('env-456.example.com', '/settings/profile');
  assert.equal(r.status, 200);
  assert.equal(await r.text(), readFileSync(join(sites, 'acme-static-sites/env-456/index.html'), 'utf8'));

  // A site without Assets: the bucket decides; its 404.html, or a plain 404 — never S3's XML.
  r = await get('docs.example.com', '/guide.html');
  assert.equal(r.status, 200);
  r = await get('docs.example.com', '/missing.html');
  assert.equal(r.status, 404);
  assert.equal(await r.text(), readFileSync(join(sites, 'acme-docs/404.html'), 'utf8'));
  r = await get('marketing.example.com', '/pricing');
  assert.equal(r.status, 200, 'the Fallback of a site without Assets');
  r = await get('pinned.pr-42.previews.example.com', '/elsewhere');
  const body = await r.text();
  assert.equal(r.status, 404);
  assert.doesNotMatch(body, /NoSuchKey|<Error>/);

  r = await get('env-123.example.com', '/', { method: 'POST', body: 'x' });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'GET, HEAD');
});

test('S3\'s 403 is a 502 (never a silent 404) unless EDGEROUTE_S3_403_IS_MISSING says it means missing', async () => {
  let r = await get('docs.example.com', '/denied.html');
  assert.equal(r.status, 502);
  const body = await r.text();
  assert.match(body, /refused access/);
  assert.doesNotMatch(body, /AccessDenied|<Error>/);

  const missing = new Miniflare({
    host: '127.0.0.1',
    port: 0,
    workers: [{ ...routerOptions, bindings: { ...routerOptions.bindings, EDGEROUTE_S3_403_IS_MISSING: 'true' } }],
  });
  try {
    r = await get('docs.example.com', '/denied.html', { via: missing });
    assert.equal(r.status, 404);
    assert.equal(await r.text(), readFileSync(join(sites, 'acme-docs/404.html'), 'utf8'));
  } finally {
    await missing.dispose();
  }
});

test('a load balancer route is proxied to its origin with the forwarding headers', async () => {
  const r = await get('feature.pr-42.previews.example.com', '/api/items?page=2', { method: 'POST', body: 'hello', headers: { 'x-forwarded-for': '198.51.100.7' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-upstream'), 'yes');
  const seen = await r.json();
  assert.equal(seen.method, 'POST');
  assert.equal(seen.url, '/api/items?page=2');
  assert.equal(seen.body, 'hello');
  assert.equal(seen.headers['x-forwarded-host'], 'feature.pr-42.previews.example.com');
  // A Worker's fetch() names the origin in Host (docs/javascript.md: route on X-Forwarded-Host).
  assert.equal(seen.headers.host, `127.0.0.1:${upstream}`);
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
  assert.match(seen.headers['x-forwarded-for'], /^198\.51\.100\.7/);
  assert.equal(r.headers.get('x-edgeroute-snapshot')?.length, 12);
});

test('redirects, unknown hosts and hostile requests are answered by the Worker', async () => {
  let r = await get('env-123.example.com', '/about?x=1');
  assert.equal(r.status, 301);
  assert.equal(r.headers.get('location'), '/about/?x=1');
  r = await get('nobody.example.org');
  assert.equal(r.status, 404);
  assert.equal(await r.text(), 'not found\n');
  // workerd's URL parser resolves encoded dot segments at the root: the request stays in its site.
  r = await get('env-123.example.com', '/%2e%2e/%2e%2e/etc/passwd');
  assert.equal(r.status, 404);
  assert.equal(await r.text(), readFileSync(join(sites, 'acme-static-sites/env-123/404.html'), 'utf8'));
  r = await get('env-123.example.com', '/a//b');
  assert.equal(r.status, 400);
  assert.equal(await r.text(), 'bad request: path_empty_segment\n');
  // (workerd refuses hosts such as `a@b` itself, before any Worker runs.)
  r = await get(`${'a'.repeat(64)}.example.com`);
  assert.equal(r.status, 400);
  assert.equal(await r.text(), 'bad request: host_bad_label\n');
  const before = s3Requests.length;
  r = await get('env-123.example.com', '/a%00b');
  assert.equal(r.status, 400);
  assert.equal(s3Requests.length, before, 'a refused request never reaches the bucket');
});

test('with a store, the Worker follows layers on its bundled base and fetches no base', async () => {
  const store = scratch('worker-store');
  publish(join(here, 'routes.snap'), store);
  apply('{"Domain": "layered.example.com", "Target": "https://layer.example.net"}\n{"Domain": "env-123.example.com", "Deleted": true}\n', store);
  const fetched = [];
  const port = await listen((req, res) => {
    fetched.push(req.url);
    try {
      res.end(readFileSync(join(store, new URL(req.url, 'http://x').pathname)));
    } catch {
      res.writeHead(404).end();
    }
  });
  const following = new Miniflare({
    host: '127.0.0.1',
    port: 0,
    ...routerOptions,
    bindings: { ...routerOptions.bindings, EDGEROUTE_STORE_URL: `http://127.0.0.1:${port}`, EDGEROUTE_REFRESH_SECONDS: '0' },
  });
  try {
    const state = JSON.parse(readFileSync(join(store, 'current.json'), 'utf8')).state;
    let answer;
    for (let i = 0; i < 100; i++) {
      answer = await get('env-123.example.com', '/', { via: following });
      if (answer.status === 404) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(answer.status, 404, 'the layer deleted it');
    assert.equal(answer.headers.get('x-edgeroute-snapshot'), state.slice(0, 12));
    assert.ok(fetched.some((u) => u.startsWith('/layers/')), fetched.join(' '));
    assert.ok(!fetched.some((u) => u.startsWith('/snapshots/')), `no base fetched: ${fetched.join(' ')}`);
  } finally {
    await following.dispose();
  }
});
