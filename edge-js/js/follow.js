// Following a store from a JavaScript runtime: the store's `current.json` and
// snapshots read over HTTP(S) (an S3 or R2 bucket, a CDN, any HTTP server),
// checked, and swapped in; the bundled snapshot serves until then, and
// whenever the store cannot be read. The layout is docs/publishing.md's.
import { Router } from './index.js';

const ID = /^[0-9a-f]{64}$/;

export class Follower {
  #base;
  #fetch;
  #interval;
  #log;
  #router;
  #etag = null;
  #lastCheck = -Infinity;
  #inflight = null;
  #first;

  /** What the follower has done: checks made, snapshots swapped in, refused, failed reads. */
  stats = { checks: 0, swaps: 0, refused: 0, errors: 0, lastError: null };

  /**
   * `url`: the store's base URL (where `current.json` is). `fallback`: the
   * Router (or snapshot bytes) to serve until the store has been read.
   * `intervalMs`: how often `refreshIfDue` looks at the pointer. `fetch`: for
   * signed or otherwise special requests. `log`: where problems are reported.
   */
  constructor({ url, fallback = null, intervalMs = 30_000, fetch = globalThis.fetch, log = console }) {
    if (!url) throw new TypeError('Follower needs the store URL');
    this.#base = String(url).replace(/\/+$/, '');
    this.#fetch = fetch;
    this.#interval = intervalMs;
    this.#log = log;
    this.#router = fallback === null || fallback instanceof Router ? fallback : Router.fromBytes(fallback);
  }

  /** The router to use now: the store's latest good snapshot, else the fallback (null if neither). */
  get router() {
    return this.#router;
  }

  /**
   * Waits for the first read of the store, at most `timeoutMs`, so that a cold
   * start serves the store's routes rather than the bundled ones when it can.
   * Resolves to the router to use (which may still be the fallback).
   */
  async ready({ timeoutMs = 1000 } = {}) {
    this.#first ??= this.refresh();
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    try {
      await Promise.race([this.#first, timeout]);
    } finally {
      clearTimeout(timer);
    }
    return this.#router;
  }

  /**
   * Starts a refresh if `intervalMs` has passed since the last one began and
   * none is running; returns its promise (never rejected), or null. Call it
   * on every request without awaiting it (in a Worker: `ctx.waitUntil`).
   */
  refreshIfDue(now = Date.now()) {
    if (this.#inflight || now - this.#lastCheck < this.#interval) return null;
    return this.refresh();
  }

  /**
   * Reads the pointer (a conditional GET) and, when it names another
   * snapshot, fetches it, checks its size, structure and SHA-256, and swaps it
   * in. Resolves to true if it swapped; never rejects: a failure is logged and
   * counted, and the current router keeps serving.
   */
  refresh() {
    if (this.#inflight) return this.#inflight;
    this.#lastCheck = Date.now();
    this.#inflight = this.#refresh()
      .catch((error) => {
        this.stats.errors += 1;
        this.stats.lastError = String(error?.message ?? error);
        this.#log.error(`edgeroute: cannot read the store ${this.#base}: ${this.stats.lastError}`);
        return false;
      })
      .finally(() => {
        this.#inflight = null;
      });
    return this.#inflight;
  }

  async #refresh() {
    this.stats.checks += 1;
    const headers = this.#etag ? { 'if-none-match': this.#etag } : {};
    const answer = await this.#fetch(`${this.#base}/current.json`, { headers });
    if (answer.status === 304) return false;
    if (!answer.ok) throw new Error(`current.json: HTTP ${answer.status}`);
    const etag = answer.headers.get('etag');
    const { id, size } = stateOf(await answer.json());
    if (this.#router && this.#router.id === id) {
      this.#etag = etag;
      return false;
    }
    const object = await this.#fetch(`${this.#base}/snapshots/${id}.snap`);
    if (!object.ok) throw new Error(`snapshot ${id}: HTTP ${object.status}`);
    const bytes = new Uint8Array(await object.arrayBuffer());
    let router;
    try {
      if (Number.isInteger(size) && bytes.length !== size) {
        throw new Error(`${bytes.length} bytes, the pointer says ${size}`);
      }
      router = Router.fromBytes(bytes);
      if (router.id !== id) {
        const got = router.id;
        router.free();
        throw new Error(`its SHA-256 is ${got}`);
      }
    } catch (error) {
      // Refused: remember nothing, so that the next check tries again (the
      // publisher may still be writing, or a cache served a damaged copy).
      this.stats.refused += 1;
      throw new Error(`refused snapshot ${id}: ${error.message}`);
    }
    this.#router = router;
    this.#etag = etag;
    this.stats.swaps += 1;
    return true;
  }
}

/**
 * The snapshot a pointer names, and its size: pointer version 2 (a state,
 * a base and layers on it) or version 1 (from before layers: a snapshot).
 * A state with layers is refused for now (this follower serves bases only;
 * serving a base without its layers' tombstones would answer for deleted
 * names), and so is a pointer of a version it does not know.
 */
function stateOf(pointer) {
  let id;
  let size;
  if (pointer?.pointer_version === undefined) {
    ({ id, size } = pointer ?? {});
  } else if (pointer.pointer_version === 2) {
    id = pointer.state;
    size = pointer.base?.size;
    const layers = Array.isArray(pointer.layers) ? pointer.layers.length : 0;
    if (layers > 0) {
      throw new Error(`current.json names state ${pointer.state} with ${layers} layer(s), which this follower does not apply yet`);
    }
    if (pointer.base?.id !== id) throw new Error('current.json names a state without layers whose id is not its base\'s');
  } else {
    throw new Error(`current.json has pointer version ${pointer.pointer_version}, which this follower does not read (upgrade it)`);
  }
  if (typeof id !== 'string' || !ID.test(id)) throw new Error('current.json names no snapshot id');
  return { id, size };
}
