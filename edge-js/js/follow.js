// Following a store from a JavaScript runtime: the store's `current.json`, its
// base snapshots and layers read over HTTP(S) (an S3 or R2 bucket, a CDN, any
// HTTP server), checked, and swapped in; a base is fetched once, and then only
// the layers each change adds. The bundled snapshot serves until the store has
// been read, and whenever it cannot be. The layout is docs/publishing.md's.
import { Router } from './index.js';

const ID = /^[0-9a-f]{64}$/;

export class Follower {
  #base;
  #fetch;
  #interval;
  #log;
  #router;
  /** The router a base swap replaced: freed at the next base swap, once
   * requests that took it before the swap are long done. */
  #retired = null;
  #etag = null;
  #lastCheck = -Infinity;
  #inflight = null;
  #first;

  /**
   * What the follower has done: checks made, states swapped in (of them, new
   * bases), objects refused, failed reads, and the bytes of the objects it fetched.
   */
  stats = { checks: 0, swaps: 0, bases: 0, refused: 0, errors: 0, lastError: null, bytes: 0 };

  /**
   * `url`: the store's base URL (where `current.json` is). `fallback`: the
   * Router (or snapshot bytes) to serve until the store has been read.
   * `intervalMs`: how often `refreshIfDue` looks at the pointer. `fetch`: for
   * signed or otherwise special requests. `log`: where problems are reported.
   */
  constructor({ url, fallback = null, intervalMs = 30_000, fetch = globalThis.fetch, log = console }) {
    if (!url) throw new TypeError('Follower needs the store URL');
    this.#base = String(url).replace(/\/+$/, '');
    // Called as a plain function: workerd refuses its `fetch` called as a
    // method of another object ("Illegal invocation").
    this.#fetch = (url, init) => fetch(url, init);
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
    const pointer = stateOf(await answer.json());
    if (this.#router && this.#router.state === pointer.state) {
      this.#etag = etag;
      return false;
    }
    // The base: the one served when it is the same (only layers are fetched), else fetched once.
    let router = this.#router;
    let keep = 0;
    if (router && router.id === pointer.base.id) {
      const held = router.layerIds;
      while (keep < held.length && keep < pointer.layers.length && held[keep] === pointer.layers[keep].id) keep += 1;
    } else {
      const bytes = await this.#object('snapshot', pointer.base.id, pointer.base.size);
      router = this.#checked(`snapshot ${pointer.base.id}`, () => {
        const fresh = Router.fromBytes(bytes);
        if (fresh.id !== pointer.base.id) {
          const got = fresh.id;
          fresh.free();
          throw new Error(`its SHA-256 is ${got}`);
        }
        return fresh;
      });
    }
    const fetched = [];
    for (const layer of pointer.layers.slice(keep)) {
      fetched.push({ id: layer.id, bytes: await this.#object('layer', layer.id, layer.size) });
    }
    // All fetched: checked and put in place at once, so a request never sees half a state.
    try {
      this.#checked(`state ${pointer.state}`, () => router.setLayers(keep, fetched, pointer.state));
    } catch (error) {
      // A new base refused with its layers: its copy in the module goes now
      // (WebAssembly memory never shrinks; retries must not pile copies up).
      if (router !== this.#router) router.free();
      throw error;
    }
    if (router !== this.#router) {
      this.stats.bases += 1;
      // The module's memory holds two bases at most: the one before the last swap goes.
      this.#retired?.free();
      this.#retired = this.#router;
    }
    this.#router = router;
    this.#etag = etag;
    this.stats.swaps += 1;
    return true;
  }

  /** A snapshot's or a layer's bytes, checked against the size the pointer gives. */
  async #object(kind, id, size) {
    const path = kind === 'snapshot' ? `snapshots/${id}.snap` : `layers/${id}.layer`;
    const object = await this.#fetch(`${this.#base}/${path}`);
    if (!object.ok) throw new Error(`${kind} ${id}: HTTP ${object.status}`);
    const bytes = new Uint8Array(await object.arrayBuffer());
    this.stats.bytes += bytes.length;
    if (Number.isInteger(size) && bytes.length !== size) {
      this.stats.refused += 1;
      throw new Error(`refused ${kind} ${id}: ${bytes.length} bytes, the pointer says ${size}`);
    }
    return bytes;
  }

  /**
   * Runs a check that throws when an object is refused: counted, and said
   * with what was refused. Nothing is remembered, so that the next check
   * tries again (the publisher may still be writing, or a cache served a
   * damaged copy).
   */
  #checked(what, check) {
    try {
      return check();
    } catch (error) {
      this.stats.refused += 1;
      throw new Error(`refused ${what}: ${error.message}`);
    }
  }
}

/**
 * The state a pointer names: its id, its base (`{id, size}`) and its layers
 * (`[{id, size}]`, oldest first). Pointer version 2 (a state), or version 1
 * (from before layers: a snapshot). A pointer of a version this follower
 * does not know is refused.
 */
function stateOf(pointer) {
  let state;
  let base;
  let layers = [];
  if (pointer?.pointer_version === undefined) {
    state = pointer?.id;
    base = { id: state, size: pointer?.size };
  } else if (pointer.pointer_version === 2) {
    state = pointer.state;
    base = { id: pointer.base?.id, size: pointer.base?.size };
    layers = Array.isArray(pointer.layers) ? pointer.layers.map((l) => ({ id: l?.id, size: l?.size })) : [];
    if (layers.length === 0 && base.id !== state) {
      throw new Error('current.json names a state without layers whose id is not its base\'s');
    }
  } else {
    throw new Error(`current.json has pointer version ${pointer.pointer_version}, which this follower does not read (upgrade it)`);
  }
  for (const id of [state, base.id, ...layers.map((l) => l.id)]) {
    if (typeof id !== 'string' || !ID.test(id)) throw new Error('current.json names no snapshot or layer id (64 hex digits)');
  }
  return { state, base, layers };
}
