// The package in Node: the conformance corpus, answers identical to the
// native resolver's, no allocation per resolve, damaged snapshots refused.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';

import { allocations, init, Router } from '../pkg/index.js';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { apply, compile, conformance, edgeroute, publish, resolveNative, scratch } from './support.mjs';

await init();
const [table, cases] = conformance();
const [bytes, snapshotPath] = compile(table);

test('the conformance corpus gives the expected answers', () => {
  const router = Router.fromBytes(bytes);
  for (const c of cases) {
    assert.deepStrictEqual(router.resolve(c.host, c.path), c.expect, `${c.host} ${c.path}`);
  }
});

test('answers are the native resolver\'s, byte for byte, also for inputs outside the corpus', () => {
  const router = Router.fromBytes(bytes);
  const odd = [
    ['open.example.com', '/' + 'a/'.repeat(9000)], // longer than the 16 KiB input buffer
    ['open.example.com', '/caf%C3%A9?q=%00'],
    ['OPEN.example.com.', '/x#frag'],
    ['free.example.com', '/dir/%2e%2e/etc'],
    ['b\u00fccher.example.org', '/'], // raw Unicode: passed as UTF-8, refused as the native CLI refuses it
    ['\u{1F600}.example.com', '/'],
    ['open.example.com', 'relative'],
    ['', '/'],
  ];
  for (const [host, path] of odd) {
    assert.deepStrictEqual(router.resolve(host, path), resolveNative(snapshotPath, host, path), `${host} ${path}`);
  }
  // The grown buffer keeps working for short requests.
  assert.deepStrictEqual(router.resolve(cases[0].host, cases[0].path), cases[0].expect);
});

test('a resolve allocates nothing in the module', () => {
  const start = allocations();
  const router = Router.fromBytes(bytes);
  assert.ok(allocations() > start, 'the counter counts (loading a snapshot allocates)');
  for (const c of cases) router.resolve(c.host, c.path); // warm: nothing should be needed even here
  const before = allocations();
  for (let i = 0; i < 20; i++) for (const c of cases) router.resolve(c.host, c.path);
  assert.equal(allocations() - before, 0, 'allocations during 20 passes over the corpus');
});

test('a resolve through layers allocates nothing either, and answers as the native resolver of the state', () => {
  const store = scratch('alloc-layers');
  publish(snapshotPath, store);
  // Every route of the table changed or deleted, across two layers.
  const hosts = table.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l).Domain);
  const half = Math.ceil(hosts.length / 2);
  apply(hosts.slice(0, half).map((h) => JSON.stringify({ Domain: h, Target: `s3://changed/${h}` })).join('\n') + '\n', store);
  apply(hosts.slice(half).map((h) => JSON.stringify({ Domain: h, Deleted: true })).join('\n') + '\n', store);
  const pointer = JSON.parse(readFileSync(join(store, 'current.json'), 'utf8'));
  const layers = pointer.layers.map(({ id }) => ({ id, bytes: readFileSync(join(store, 'layers', `${id}.layer`)) }));
  const router = Router.fromBytes(bytes);
  router.setLayers(0, layers, pointer.state);
  assert.equal(router.state, pointer.state);
  for (const c of cases) router.resolve(c.host, c.path);
  const before = allocations();
  for (let i = 0; i < 20; i++) for (const c of cases) router.resolve(c.host, c.path);
  assert.equal(allocations() - before, 0, 'allocations during 20 passes over the corpus, through two layers');
  // The state as one snapshot, through the native resolver.
  execFileSync(edgeroute, ['compact', '--store', `dir:${store}`]);
  const compacted = JSON.parse(readFileSync(join(store, 'current.json'), 'utf8'));
  const mergedPath = join(store, 'snapshots', `${compacted.state}.snap`);
  for (const c of cases.filter((c) => !`${c.host}${c.path}`.includes('\0')).slice(0, 40)) {
    assert.deepStrictEqual(router.resolve(c.host, c.path), resolveNative(mergedPath, c.host, c.path), `${c.host} ${c.path}`);
  }
});

test('id, routes and size describe the snapshot', () => {
  const router = Router.fromBytes(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  assert.equal(router.id, createHash('sha256').update(bytes).digest('hex'));
  assert.equal(router.routes, table.split('\n').filter((l) => l.trim()).length);
  assert.equal(router.size, bytes.length);
  router.free();
});

test('damaged, truncated and foreign snapshots are refused with the reason', () => {
  const flipped = bytes.slice();
  flipped[Math.floor(flipped.length / 2)] ^= 0x40;
  assert.throws(() => Router.fromBytes(flipped), /not a usable snapshot: .*checksum/i);
  assert.throws(() => Router.fromBytes(bytes.slice(0, bytes.length - 100)), /not a usable snapshot/);
  assert.throws(() => Router.fromBytes(bytes.slice(0, 10)), /not a usable snapshot: .*(short|truncated)/i);
  assert.throws(() => Router.fromBytes(new TextEncoder().encode('{"not":"a snapshot"}'.repeat(10))), /magic/i);
  assert.throws(() => Router.fromBytes('a string'), TypeError);
  // The module is still usable after refusals.
  assert.equal(Router.fromBytes(bytes).resolve('open.example.com', '/').kind, 'static');
});
