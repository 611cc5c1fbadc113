// Types of edgeroute's JavaScript package (index.js, follow.js).

/** Loads the module once: a WebAssembly.Module or its bytes; in Node, nothing (the .wasm beside index.js is read). */
export function init(source?: WebAssembly.Module | BufferSource): Promise<void>;
/** `init` for a module already at hand, synchronously. */
export function initModule(source: WebAssembly.Module | BufferSource): void;
/** Allocations the module has made since it loaded (a resolve makes none). */
export function allocations(): number;

/** The answer to one request: the object of `edgeroute resolve --json`. */
export type Resolution =
  | { kind: 'static'; domain: string; bucket: string; key: string; status: number; fallback?: string; not_found_page?: string }
  | { kind: 'redirect'; domain: string; location: string; status: number }
  | { kind: 'balancer'; domain: string; origin: string; port: number; scheme: 'http' | 'https' }
  | { kind: 'not_found' }
  | { kind: 'bad_request'; reason: BadRequestReason };

export type BadRequestReason =
  | 'host_bad_port'
  | 'host_empty'
  | 'host_too_long'
  | 'host_bad_char'
  | 'host_bad_label'
  | 'path_not_absolute'
  | 'path_bad_escape'
  | 'path_bad_char'
  | 'path_dot_segment'
  | 'path_empty_segment';

export class Router {
  private constructor();
  /** Validates a snapshot and makes a router of it; throws on a damaged or truncated one. */
  static fromBytes(bytes: Uint8Array | ArrayBuffer | ArrayBufferView): Router;
  /** The lowercase hex SHA-256 of the base snapshot. */
  readonly id: string;
  /** The state's id (base and layers), as store pointers name it; the base's id without layers. */
  readonly state: string;
  /** The layers' ids, oldest first. */
  readonly layerIds: string[];
  /** Bytes of the layers. */
  readonly layerBytes: number;
  /**
   * Makes the state the first `keep` layers, then `layers`, which must make state `state`;
   * every layer and the state's id are checked before anything changes. Throws, changing nothing, if refused.
   */
  setLayers(keep: number, layers: { id: string; bytes: Uint8Array | ArrayBuffer }[], state: string): void;
  /** Routes in the snapshot. */
  readonly routes: number;
  /** Bytes in the snapshot. */
  readonly size: number;
  /** Resolves the Host header's value and the request target (path and optional ?query). */
  resolve(host: string, path?: string): Resolution;
  /** Frees the module's copy of the snapshot now rather than when collected. */
  free(): void;
}

export interface FollowerOptions {
  /** The store's base URL: where current.json is. */
  url: string | URL;
  /** What to serve until the store has been read: a Router or snapshot bytes. */
  fallback?: Router | Uint8Array | ArrayBuffer | null;
  /** How often refreshIfDue looks at the pointer (default 30 s). */
  intervalMs?: number;
  fetch?: typeof globalThis.fetch;
  log?: { error(message: string): void };
}

export class Follower {
  constructor(options: FollowerOptions);
  /** The store's latest good state, else the fallback. */
  readonly router: Router | null;
  readonly stats: {
    checks: number;
    swaps: number;
    bases: number;
    refused: number;
    errors: number;
    lastError: string | null;
    bytes: number;
  };
  /** Waits for the first read of the store, at most timeoutMs (default 1000). */
  ready(options?: { timeoutMs?: number }): Promise<Router | null>;
  /** Starts a refresh when one is due; its promise (never rejected), or null. */
  refreshIfDue(now?: number): Promise<boolean> | null;
  /** Reads the pointer and swaps in the new state, checked (a new base fetched only when the base changed); true if it swapped. */
  refresh(): Promise<boolean>;
}
