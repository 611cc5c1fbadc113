// edgeroute's resolver for JavaScript runtimes. The WebAssembly module is the
// wasm-bindgen build of the same Rust resolver the native host runs; this file
// wraps its raw binding (edgeroute_edge_js.js) into `Router`, and re-exports the
// store follower (follow.js). See docs/javascript.md.
import { initSync, RawRouter, allocations as rawAllocations } from './edgeroute_edge_js.js';

export { Follower } from './follow.js';

const WASM_FILE = 'edgeroute_edge_js_bg.wasm';
let wasm = null;
let view = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Loads the module, once. `source` is a `WebAssembly.Module` (workerd imports
 * the .wasm as one), or the module's bytes. In Node it may be left out: the
 * .wasm beside this file is read.
 */
export async function init(source) {
  if (wasm) return;
  if (source === undefined) {
    const { readFile } = await import('node:fs/promises');
    source = await readFile(new URL(WASM_FILE, import.meta.url));
  }
  initModule(source);
}

/** `init` for a module already at hand: a `WebAssembly.Module` or its bytes. */
export function initModule(source) {
  if (wasm) return;
  if (!(source instanceof WebAssembly.Module)) source = new WebAssembly.Module(source);
  wasm = initSync({ module: source });
}

/** The module's memory as bytes; a fresh view whenever the memory has grown. */
function memory() {
  if (view.buffer !== wasm.memory.buffer) view = new Uint8Array(wasm.memory.buffer);
  return view;
}

/** Allocations the module has made since it loaded (a resolve makes none). */
export function allocations() {
  return rawAllocations();
}

/**
 * One validated state: a base snapshot and the layers on it (none at first).
 * `resolve` writes the host and path into a buffer inside the module that is
 * reused for every call and parses the answer the module writes back: the
 * JSON object of `edgeroute resolve --json`.
 */
export class Router {
  #raw;
  #id = null;
  #state = null;
  #input;
  #capacity;

  constructor(raw) {
    if (!(raw instanceof RawRouter)) throw new TypeError('use Router.fromBytes(bytes)');
    this.#raw = raw;
    this.#input = raw.inputPtr();
    this.#capacity = raw.inputCapacity();
  }

  /**
   * Validates a snapshot (a Uint8Array, ArrayBuffer or other view) and makes
   * a router of it; the bytes are copied into the module once. Throws an
   * Error saying what is wrong with a damaged or truncated snapshot.
   */
  static fromBytes(bytes) {
    if (!wasm) throw new Error('edgeroute: call init() (or initModule()) before Router.fromBytes');
    if (bytes instanceof ArrayBuffer) bytes = new Uint8Array(bytes);
    else if (ArrayBuffer.isView(bytes) && !(bytes instanceof Uint8Array)) {
      bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } else if (!(bytes instanceof Uint8Array)) {
      throw new TypeError('Router.fromBytes takes a Uint8Array or an ArrayBuffer');
    }
    return new Router(RawRouter.fromBytes(bytes));
  }

  /** The base snapshot's id: the lowercase hex SHA-256 of its bytes. */
  get id() {
    return (this.#id ??= this.#raw.id);
  }

  /** The state's id (the base's id and its layers' ids, hashed), as store pointers name it; the base's id without layers. */
  get state() {
    return (this.#state ??= this.#raw.state);
  }

  /** The layers' ids, oldest first. */
  get layerIds() {
    const ids = [];
    for (let i = 0; i < this.#raw.layerCount; i += 1) ids.push(this.#raw.layerId(i));
    return ids;
  }

  /** Bytes of the layers. */
  get layerBytes() {
    return this.#raw.layerBytes;
  }

  /**
   * Makes the state the first `keep` layers and then `layers` (`[{id, bytes}]`,
   * oldest first), which must be state `state` (its id, as a pointer names
   * it): each layer is checked (its SHA-256 is its id, it validates, it stacks
   * on the layers before it and on this base), and the state's id, before
   * anything changes, and the change is made at once. Throws, changing
   * nothing, if anything is refused.
   */
  setLayers(keep, layers, state) {
    this.#raw.beginLayers(keep);
    for (const { id, bytes } of layers) {
      this.#raw.stageLayer(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes), id);
    }
    this.#state = null;
    this.#raw.commitLayers(state);
  }

  /** Routes in the snapshot. */
  get routes() {
    return this.#raw.routes;
  }

  /** Bytes in the snapshot. */
  get size() {
    return this.#raw.size;
  }

  /**
   * Resolves a request: `host` is the Host header's value as sent, `path`
   * the request target (path and optional `?query`). Strings are passed as
   * UTF-8. Returns `{kind: "static", domain, bucket, key, status, fallback?, not_found_page?}`,
   * `{kind: "redirect", domain, location, status}`,
   * `{kind: "balancer", domain, origin, port, scheme}`, `{kind: "not_found"}`
   * or `{kind: "bad_request", reason}`.
   */
  resolve(host, path = '/') {
    host = String(host);
    path = String(path);
    let input = memory().subarray(this.#input, this.#input + this.#capacity);
    let h = encoder.encodeInto(host, input);
    let p = encoder.encodeInto(path, input.subarray(h.written));
    if (h.read < host.length || p.read < path.length) {
      // Longer than any request so far: grow the buffer once (UTF-8 takes at
      // most 3 bytes per UTF-16 unit) and keep it.
      this.#raw.reserve(3 * (host.length + path.length));
      this.#input = this.#raw.inputPtr();
      this.#capacity = this.#raw.inputCapacity();
      input = memory().subarray(this.#input, this.#input + this.#capacity);
      h = encoder.encodeInto(host, input);
      p = encoder.encodeInto(path, input.subarray(h.written));
    }
    const length = this.#raw.resolve(h.written, p.written);
    const at = this.#raw.outputPtr();
    return JSON.parse(decoder.decode(memory().subarray(at, at + length)));
  }

  /** Frees the module's copy of the snapshot now rather than when collected. */
  free() {
    this.#raw.free();
  }
}
