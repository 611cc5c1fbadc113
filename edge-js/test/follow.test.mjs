// The store follower against a store published by the native CLI and served
// over HTTP on 127.0.0.1: swaps, conditional reads, and every refusal.
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { Follower, init, Router } from '../pkg/index.js';
import { compile, publish, scratch } from './support.mjs';

await init();

const table = (n) =>
  Array.from({ length: n }, (_, i) => JSON.stringify({ Domain: `env-${i}.example.com`, Target: 'https://lb.example.net' })).join('\n');

let server;
let base;
let store;
const faults = { status: 0, damage: false, requests: [] };

before(async () => {
  store = scratch('store');
  server = createServer((req, res) => {
    faults.requests.push(`${req.method} ${req.url} ${req.headers['if-none-match'] ?? ''}`.trim());
    if (faults.status) {
      res.writeHead(faults.status).end('fault');
      return;
    }
    const file = join(store, decodeURIComponent(new URL(req.url, 'http://x').pathname));
    let info;
    try {
      info = statSync(file);
    } catch {
      res.writeHead(404).end('<Error><Code>NoSuchKey</Code></Error>');
      return;
    }
    const etag = `"${info.mtimeMs}-${info.size}"`;
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag }).end();
      return;
    }
    let body = readFileSync(file);
    if (faults.damage && file.endsWith('.snap')) {
      body = Buffer.from(body);
      body[body.length >> 1] ^= 0xff;
    }
    res.writeHead(200, { etag, 'content-length': body.length }).end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => server.close());

const quiet = { errors: [], error(message) { this.errors.push(message); } };

test('serves the fallback, then every snapshot published, reading the pointer conditionally', async () => {
  const [bundled] = compile(table(1));
  const follower = new Follower({ url: `${base}/`, fallback: bundled, intervalMs: 0, log: quiet });
  assert.equal(follower.router.routes, 1);

  const [, first] = compile(table(3));
  publish(first, store);
  const router = await follower.ready({ timeoutMs: 5000 });
  assert.equal(router.routes, 3);
  assert.equal(follower.router.resolve('env-2.example.com', '/').kind, 'balancer');
  assert.equal(follower.stats.swaps, 1);

  // Unchanged: a 304, nothing fetched.
  faults.requests.length = 0;
  assert.equal(await follower.refresh(), false);
  assert.equal(faults.requests.length, 1, faults.requests.join('; '));
  assert.match(faults.requests[0], /^GET \/current.json "/, 'with If-None-Match');

  const [, second] = compile(table(5));
  publish(second, store);
  assert.equal(await follower.refresh(), true);
  assert.equal(follower.router.routes, 5);
  assert.equal(follower.router.id, JSON.parse(readFileSync(join(store, 'current.json'), 'utf8')).state);
  assert.equal(follower.stats.errors, 0);
});

test('a damaged snapshot, a store error or a missing object keeps the current router', async () => {
  const store2 = store; // the same store, published further
  const follower = new Follower({ url: base, intervalMs: 0, log: quiet });
  assert.equal(follower.router, null);
  await follower.refresh();
  const good = follower.router;
  assert.ok(good);

  const [, next] = compile(table(7));
  publish(next, store2);
  faults.damage = true;
  quiet.errors.length = 0;
  assert.equal(await follower.refresh(), false);
  faults.damage = false;
  assert.equal(follower.router, good, 'still the previous snapshot');
  assert.equal(follower.stats.refused, 1);
  assert.match(quiet.errors[0], /refused snapshot [0-9a-f]{64}: not a usable snapshot: .*checksum/);

  faults.status = 503;
  assert.equal(await follower.refresh(), false);
  faults.status = 0;
  assert.equal(follower.router, good);
  assert.match(quiet.errors.at(-1), /current.json: HTTP 503/);

  // A pointer whose object is missing.
  const pointer = JSON.parse(readFileSync(join(store2, 'current.json'), 'utf8'));
  const name = (id) => ({ ...pointer, state: id, base: { ...pointer.base, id } });
  writeFileSync(join(store2, 'current.json'), JSON.stringify(name('f'.repeat(64))));
  assert.equal(await follower.refresh(), false);
  assert.match(quiet.errors.at(-1), /snapshot f{64}: HTTP 404/);
  // A pointer naming no valid id is never turned into a URL.
  writeFileSync(join(store2, 'current.json'), JSON.stringify(name('../../etc/passwd')));
  assert.equal(await follower.refresh(), false);
  assert.match(quiet.errors.at(-1), /names no snapshot id/);
  writeFileSync(join(store2, 'current.json'), JSON.stringify(pointer));

  // Once the store is whole again, the next refresh swaps.
  assert.equal(await follower.refresh(), true);
  assert.equal(follower.router.routes, 7);
  assert.equal(follower.stats.errors, 4);
});

test('a pointer from before layers is followed; a state with layers, or a newer pointer version, is refused', async () => {
  const follower = new Follower({ url: base, intervalMs: 0, log: quiet });
  await follower.refresh();
  const good = follower.router;
  const pointer = JSON.parse(readFileSync(join(store, 'current.json'), 'utf8'));
  assert.equal(pointer.pointer_version, 2);
  assert.equal(good.id, pointer.state);

  // Version 1, as publishers before layers wrote it: still read.
  const [, next] = compile(table(9));
  publish(next, store);
  const v2 = JSON.parse(readFileSync(join(store, 'current.json'), 'utf8'));
  const v1 = { id: v2.state, format_version: 2, routes: 9, size: v2.base.size, created_at: v2.created_at, previous: null, source: 't' };
  writeFileSync(join(store, 'current.json'), JSON.stringify(v1));
  assert.equal(await follower.refresh(), true);
  assert.equal(follower.router.routes, 9);
  const served = follower.router;

  // A state with a layer: never its base alone (the layer may delete names).
  const layered = { ...v2, state: 'a'.repeat(64), layers: [{ id: 'b'.repeat(64), upserts: 0, deletes: 1, size: 120 }] };
  writeFileSync(join(store, 'current.json'), JSON.stringify(layered));
  quiet.errors.length = 0;
  assert.equal(await follower.refresh(), false);
  assert.equal(follower.router, served);
  assert.match(quiet.errors.at(-1), /with 1 layer\(s\), which this follower does not apply yet/);
  writeFileSync(join(store, 'current.json'), JSON.stringify({ ...v2, pointer_version: 3 }));
  assert.equal(await follower.refresh(), false);
  assert.match(quiet.errors.at(-1), /pointer version 3, which this follower does not read/);
  writeFileSync(join(store, 'current.json'), JSON.stringify(v2));
});

test('refreshIfDue starts one refresh per interval, and none while one runs', async () => {
  const follower = new Follower({ url: base, intervalMs: 60_000, log: quiet });
  const first = follower.refreshIfDue();
  assert.ok(first);
  assert.equal(follower.refreshIfDue(), null, 'one is running');
  await first;
  assert.equal(follower.refreshIfDue(), null, 'not due yet');
  assert.ok(follower.refreshIfDue(Date.now() + 60_000));
});

test('ready() gives up after its timeout and leaves the fallback serving', async () => {
  const [bundled] = compile(table(2));
  const stalled = () => new Promise(() => {});
  const follower = new Follower({ url: base, fallback: Router.fromBytes(bundled), fetch: stalled, log: quiet });
  const started = Date.now();
  const router = await follower.ready({ timeoutMs: 100 });
  assert.equal(router.routes, 2);
  assert.ok(Date.now() - started < 5000);
});
