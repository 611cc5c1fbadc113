// Helpers shared by the JavaScript tests: the repository's paths, the native
// `edgeroute` CLI (built by cargo) to compile, publish and resolve, and the
// package built by scripts/build-js.sh.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../../', import.meta.url));
export const edgeroute = process.env.EDGEROUTE_BIN ?? join(root, 'target/debug/edgeroute');
export const pkg = join(root, 'edge-js/pkg');

export function scratch(name) {
  return mkdtempSync(join(tmpdir(), `edgeroute-js-${name}-`));
}

/** Compiles a table (JSON Lines text, or a file path) and returns [bytes, path]. */
export function compile(table, dir = scratch('compile')) {
  let from = table;
  if (table.includes('\n') || table.trim().startsWith('{')) {
    from = join(dir, 'table.jsonl');
    writeFileSync(from, table);
  }
  const out = join(dir, `routes-${Math.random().toString(36).slice(2)}.snap`);
  execFileSync(edgeroute, ['compile', '--from', from, '--out', out], { stdio: ['ignore', 'ignore', 'inherit'] });
  return [new Uint8Array(readFileSync(out)), out];
}

/** The native resolver's answer (`edgeroute resolve --json`). */
export function resolveNative(snapshot, host, path) {
  const out = execFileSync(edgeroute, ['resolve', '--snapshot', snapshot, '--json', '--', host, path], {
    encoding: 'utf8',
  });
  return JSON.parse(out);
}

/** Publishes a snapshot file to a directory store. */
export function publish(snapshot, store) {
  execFileSync(edgeroute, ['publish', '--store', `dir:${store}`, '--snapshot', snapshot], { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** Applies changes (JSON Lines text) to a directory store as one layer. */
export function apply(lines, store) {
  execFileSync(edgeroute, ['apply', '--store', `dir:${store}`, '-'], { input: lines, stdio: ['pipe', 'ignore', 'inherit'] });
}

/** Compacts a directory store's layers into a new base. */
export function compact(store) {
  execFileSync(edgeroute, ['compact', '--store', `dir:${store}`], { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** The conformance corpus: [table text, cases]. */
export function conformance() {
  const table = readFileSync(join(root, 'tests/conformance/table.jsonl'), 'utf8');
  const cases = readFileSync(join(root, 'tests/conformance/cases.jsonl'), 'utf8')
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line));
  return [table, cases];
}
