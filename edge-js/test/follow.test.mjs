// The store follower against a store published by the native CLI and served
// over HTTP on 127.0.0.1: swaps, conditional reads, and every refusal.
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { Follower, init, Router } from '../pkg/index.js';
import { apply, compact, compile, publish, scratch } from './support.mjs';

await init();

const table = (n) =>
  Array.from({ length: n }, (_, i) => JSON.stringify({ Domain: `env-${i}.example.com`, Target: 'https://lb.example.net' })).join('\n');

let server;
let base;
let store;
// `damage`: a suffix (`.snap`, `.layer`) whose objects are served with a byte flipped.
const faults = { status: 0, damage: null, requests: [] };

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
    if (faults.damage && file.endsWith(faults.damage)) {
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
  faults.damage = '.snap';
  quiet.errors.length = 0;
  assert.equal(await follower.refresh(), false);
  faults.damage = null;
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
  assert.match(quiet.errors.at(-1), /names no snapshot or layer id/);
  writeFileSync(join(store2, 'current.json'), JSON.stringify(pointer));

  // Once the store is whole again, the next refresh swaps.
  assert.equal(await follower.refresh(), true);
  assert.equal(follower.router.routes, 7);
  assert.equal(follower.stats.errors, 4);
});

test('a pointer from before layers is followed, and one of a newer version refused', async () => {
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
  quiet.errors.length = 0;
  writeFileSync(join(store, 'current.json'), JSON.stringify({ ...v2, pointer_version: 3 }));
  assert.equal(await follower.refresh(), false);
  assert.match(quiet.errors.at(-1), /pointer version 3, which this follower does not read/);
  writeFileSync(join(store, 'current.json'), JSON.stringify(v2));
});

test('a base is fetched once, then only the layers each change adds; a damaged or foreign layer changes nothing', async () => {
  const layered = scratch('layered');
  const [bundled, path] = compile(table(20));
  publish(path, layered);
  const requests = [];
  const app = createServer((req, res) => {
    requests.push(req.url);
    const file = join(layered, new URL(req.url, 'http://x').pathname);
    let body;
    try {
      body = Buffer.from(readFileSync(file));
    } catch {
      res.writeHead(404).end();
      return;
    }
    if (faults.damage && file.endsWith(faults.damage)) body[body.length >> 1] ^= 0xff;
    res.writeHead(200).end(body);
  });
  await new Promise((resolve) => app.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${app.address().port}`;
  try {
    // The bundled base is the store's: nothing but the pointer is fetched.
    const follower = new Follower({ url, fallback: bundled, intervalMs: 0, log: quiet });
    assert.equal(await follower.refresh(), false);
    assert.deepEqual(requests, ['/current.json']);

    apply('{"Domain":"new.example.com","Target":"s3://sites/new"}\n{"Domain":"env-3.example.com","Deleted":true}\n', layered);
    assert.equal(await follower.refresh(), true);
    const router = follower.router;
    assert.equal(router.resolve('new.example.com', '/').kind, 'static');
    assert.equal(router.resolve('env-3.example.com', '/').kind, 'not_found');
    assert.equal(router.resolve('env-4.example.com', '/').kind, 'balancer');
    const pointer = () => JSON.parse(readFileSync(join(layered, 'current.json'), 'utf8'));
    assert.equal(router.state, pointer().state);
    assert.equal(router.layerIds.length, 1);
    apply('{"Domain":"env-3.example.com","Target":"https://back.example.net"}\n', layered);
    requests.length = 0;
    const bytesBefore = follower.stats.bytes;
    assert.equal(await follower.refresh(), true);
    assert.equal(follower.router, router, 'the same router: the base stayed, a layer came');
    assert.deepEqual(requests.map((r) => r.split('/')[1]), ['current.json', 'layers']);
    assert.equal(follower.stats.bytes - bytesBefore, pointer().layers[1].size);
    assert.equal(router.resolve('env-3.example.com', '/').origin, 'back.example.net');
    assert.equal(follower.stats.bases, 0);

    // A damaged layer: refused, the state before it serves on.
    apply('{"Domain":"env-5.example.com","Deleted":true}\n', layered);
    faults.damage = '.layer';
    quiet.errors.length = 0;
    assert.equal(await follower.refresh(), false);
    faults.damage = null;
    assert.match(quiet.errors.at(-1), /refused state [0-9a-f]{64}: layer [0-9a-f]{64}/);
    assert.equal(router.resolve('env-5.example.com', '/').kind, 'balancer');
    assert.equal(router.layerIds.length, 2);
    // A pointer whose layers do not make its state: refused.
    const good = pointer();
    writeFileSync(join(layered, 'current.json'), JSON.stringify({ ...good, state: 'c'.repeat(64) }));
    assert.equal(await follower.refresh(), false);
    assert.match(quiet.errors.at(-1), /its layers make state [0-9a-f]{64}, not c{64}/);
    // Layers out of order do not stack: refused.
    writeFileSync(join(layered, 'current.json'), JSON.stringify({ ...good, layers: [...good.layers].reverse() }));
    assert.equal(await follower.refresh(), false);
    assert.match(quiet.errors.at(-1), /refused state/);
    assert.equal(router.layerIds.length, 2);
    writeFileSync(join(layered, 'current.json'), JSON.stringify(good));
    assert.equal(await follower.refresh(), true);
    assert.equal(router.resolve('env-5.example.com', '/').kind, 'not_found');

    // A compaction: the new base is fetched, once.
    compact(layered);
    assert.equal(await follower.refresh(), true);
    assert.equal(follower.stats.bases, 1);
    assert.notEqual(follower.router, router);
    assert.equal(follower.router.layerIds.length, 0);
    assert.equal(follower.router.resolve('env-5.example.com', '/').kind, 'not_found');
    assert.equal(follower.router.resolve('new.example.com', '/').kind, 'static');
    // A second compaction: the base before the last swap is freed (the module holds two at most).
    apply('{"Domain":"newer.example.com","Target":"s3://sites/newer"}\n', layered);
    compact(layered);
    assert.equal(await follower.refresh(), true);
    assert.equal(follower.stats.bases, 2);
    assert.equal(follower.router.resolve('newer.example.com', '/').kind, 'static');
    assert.throws(() => router.resolve('new.example.com', '/'), 'the first base was freed');
  } finally {
    app.close();
  }
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
