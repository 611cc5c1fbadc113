// edgeroute as a Cloudflare Worker (module syntax). Every request's host and
// path are resolved through edgeroute's WebAssembly resolver against the
// bundled snapshot (a Data module) or, with EDGEROUTE_STORE_URL, against the
// store it follows; then the Worker fetches the static site's object or the
// load balancer's answer, or answers itself with a redirect, a 404 or a 400.
//
// Bindings (all optional): EDGEROUTE_STORE_URL, EDGEROUTE_REFRESH_SECONDS (30),
// EDGEROUTE_S3_URL (default "https://{bucket}.s3.amazonaws.com"; "{bucket}" is
// replaced, so a path-style endpoint such as "http://127.0.0.1:9000/{bucket}" works),
// EDGEROUTE_S3_403_IS_MISSING ("true": S3's 403 means a missing key, as it does
// for a reader that may not list the bucket; else a 403 is a 502, logged).
import wasm from '../../../edge-js/pkg/edgeroute_edge_js_bg.wasm';
import { Follower, initModule, Router } from '../../../edge-js/pkg/index.js';
import bundled from '../routes.snap';

initModule(wasm);

let follower = null;
let fixed = null;

function routes(env, ctx) {
  if (!env.EDGEROUTE_STORE_URL) return (fixed ??= Router.fromBytes(bundled));
  follower ??= new Follower({
    url: env.EDGEROUTE_STORE_URL,
    fallback: bundled,
    intervalMs: Number(env.EDGEROUTE_REFRESH_SECONDS ?? 30) * 1000,
  });
  const refresh = follower.refreshIfDue();
  if (refresh) ctx.waitUntil(refresh);
  return follower.router;
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding'];

export default {
  async fetch(request, env, ctx) {
    const router = routes(env, ctx);
    const url = new URL(request.url);
    const host = request.headers.get('host') ?? url.host;
    const answer = router.resolve(host, url.pathname + url.search);
    // Read now: the router is not used after an await (a base swap may retire it).
    const state = router.state;
    const response = await route(answer, request, url, host, env);
    // A WebSocket the origin accepted goes back as it is.
    if (response.status === 101) return response;
    // Responses from fetch() are immutable: copy before adding the header.
    const out = new Response(response.body, response);
    out.headers.set('x-edgeroute-snapshot', state.slice(0, 12));
    return out;
  },
};

async function route(answer, request, url, host, env) {
  switch (answer.kind) {
    case 'static':
      return serveStatic(answer, request, env);
    case 'redirect':
      return new Response('moved\n', { status: answer.status, headers: { location: answer.location, 'content-type': 'text/plain' } });
    case 'balancer':
      return proxy(answer, request, url, host);
    case 'not_found':
      return text(404, 'not found');
    default:
      return text(400, `bad request: ${answer.reason}`);
  }
}

/**
 * A static site's object, as S3 website hosting answers: the key, then the
 * Fallback, then the site's not-found page (404), then a plain 404; the
 * resolver's answer names each of them.
 */
async function serveStatic(answer, request, env) {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    return new Response('method not allowed\n', { status: 405, headers: { allow: 'GET, HEAD' } });
  }
  const tries = [[answer.key, answer.status]];
  if (answer.status === 200) {
    if (answer.fallback && answer.fallback !== answer.key) tries.push([answer.fallback, 200]);
    if (answer.not_found_page && answer.not_found_page !== answer.key) tries.push([answer.not_found_page, 404]);
  }
  const base = (env.EDGEROUTE_S3_URL ?? 'https://{bucket}.s3.amazonaws.com').replace('{bucket}', answer.bucket);
  for (const [key, status] of tries) {
    const headers = new Headers();
    // Conditions and ranges apply to the object asked for, not to a 404 page.
    if (status === 200) {
      for (const name of ['if-none-match', 'if-modified-since', 'range', 'if-range']) {
        const value = request.headers.get(name);
        if (value) headers.set(name, value);
      }
    }
    let object;
    try {
      object = await fetch(`${base}/${key.split('/').map(encodeURIComponent).join('/')}`, { method: request.method, headers });
    } catch {
      return text(502, 'bad gateway: the site\'s storage did not answer');
    }
    // S3's errors name buckets and keys: they never pass.
    if (object.status === 404) continue;
    if (object.status === 403) {
      if (denialMeansMissing(env)) continue;
      // Expired credentials or a changed policy must not pass for missing pages.
      console.error(`edgeroute: S3 refused access to ${answer.bucket}/${key} (403); set EDGEROUTE_S3_403_IS_MISSING if the reader may not list the bucket`);
      return text(502, 'bad gateway: the site\'s storage refused access');
    }
    if (object.status >= 500) return text(502, 'bad gateway: the site\'s storage did not answer');
    const out = new Response(object.body, { status: status === 404 ? 404 : object.status, headers: object.headers });
    for (const name of [...out.headers.keys()]) if (name.startsWith('x-amz-')) out.headers.delete(name);
    return out;
  }
  return text(404, 'not found');
}

/** Whether S3's 403 means a missing key (EDGEROUTE_S3_403_IS_MISSING). */
function denialMeansMissing(env) {
  return ['true', '1', 'yes'].includes(String(env.EDGEROUTE_S3_403_IS_MISSING ?? '').toLowerCase());
}

/** The request, proxied to the load balancer; its answer streamed back. */
async function proxy(answer, request, url, host) {
  const origin = answer.origin.includes(':') ? `[${answer.origin}]` : answer.origin;
  const target = `${answer.scheme}://${origin}:${answer.port}${url.pathname}${url.search}`;
  const headers = new Headers(request.headers);
  for (const name of HOP_BY_HOP) headers.delete(name);
  const client = request.headers.get('cf-connecting-ip');
  const forwardedFor = request.headers.get('x-forwarded-for');
  if (client) headers.set('x-forwarded-for', forwardedFor ? `${forwardedFor}, ${client}` : client);
  headers.set('x-forwarded-host', host);
  headers.set('x-forwarded-proto', url.protocol.replace(':', ''));
  try {
    return await fetch(target, { method: request.method, headers, body: request.body, redirect: 'manual' });
  } catch (error) {
    return text(502, `bad gateway: ${answer.origin}:${answer.port} did not answer (${error.message})`);
  }
}

function text(status, body) {
  return new Response(`${body}\n`, { status, headers: { 'content-type': 'text/plain; charset=utf-8' } });
}
