// edgeroute as a Lambda@Edge function (Node 20, ES modules). The origin-request
// handler resolves the viewer's host and the URI through edgeroute's WebAssembly
// resolver and rewrites the request: the S3 origin for a static site, a custom
// origin for a load balancer; or it answers itself with a redirect, a 404 or a
// 400. The origin-response handler gives a site's 404 page its 404 status and
// never lets S3's XML errors through. CloudFront settings: README.md.
import { readFileSync } from 'node:fs';

import { Follower, init, Router } from '../../edge-js/pkg/index.js';

const SNAPSHOT_HEADER = 'x-edgeroute-snapshot';
const STATUS_HEADER = 'x-edgeroute-status';

const DEFAULTS = {
  // A header a viewer-request function copies the viewer's Host into (and
  // so overwrites on every request: a client could send it itself). Unset,
  // the Host header is used if CloudFront forwards the viewer's.
  viewerHostHeader: null,
  // The store to follow (an HTTP(S) URL, docs/publishing.md); null serves the bundled snapshot only.
  store: null,
  refreshSeconds: 30,
  // How long a cold start waits for the store before serving the bundled snapshot.
  coldStartWaitMs: 1000,
  s3: { region: 'us-east-1', domainName: '{bucket}.s3.{region}.amazonaws.com', authMethod: 'origin-access-identity' },
  // S3's 403 means a missing key: true only when the origin's reader may
  // not list the bucket (S3 then answers 403 for a missing key). Else a 403
  // (expired credentials, a changed policy) is a 502, logged, never a 404.
  s3403IsMissing: false,
  balancer: { sslProtocols: ['TLSv1.2'], readTimeout: 30, keepaliveTimeout: 5 },
};

/**
 * The two handlers for a router source: `router` (a Router) or `follower` (a
 * Follower); `config` overrides DEFAULTS.
 */
export function createHandlers({ router = null, follower = null, config = {} }) {
  const cfg = { ...DEFAULTS, ...config, s3: { ...DEFAULTS.s3, ...config.s3 }, balancer: { ...DEFAULTS.balancer, ...config.balancer } };

  async function current() {
    if (!follower) return router;
    const routes = await follower.ready({ timeoutMs: cfg.coldStartWaitMs });
    follower.refreshIfDue(); // not awaited: the next requests get the new snapshot
    return routes;
  }

  async function originRequest(event) {
    const request = event.Records[0].cf.request;
    const routes = await current();
    if (!routes) return generated('503', 'service unavailable: no routes loaded yet');
    const host = viewerHost(request, cfg.viewerHostHeader);
    if (host === DISAGREES) {
      return generated('400', `bad request: ${cfg.viewerHostHeader} disagrees with the Host the viewer sent`);
    }
    if (!host) {
      console.error(
        'edgeroute: the viewer\'s Host does not reach the origin-request function; forward the Host header ' +
          '(an origin request policy that includes it) or copy it into a header in a viewer-request function ' +
          `and name that header in viewerHostHeader${cfg.viewerHostHeader ? ` (now ${cfg.viewerHostHeader})` : ''}`,
      );
      return generated('502', 'bad gateway: the router cannot see the requested host (CloudFront configuration)');
    }
    const target = request.querystring ? `${request.uri}?${request.querystring}` : request.uri;
    const answer = routes.resolve(host, target);
    const id = routes.state.slice(0, 12);
    switch (answer.kind) {
      case 'static': {
        const region = cfg.s3.region;
        const domainName = cfg.s3.domainName.replace('{bucket}', answer.bucket).replace('{region}', region);
        request.origin = { s3: { domainName, region, authMethod: cfg.s3.authMethod, path: '', customHeaders: {} } };
        request.uri = '/' + answer.key.split('/').map(encodeURIComponent).join('/');
        request.querystring = '';
        setHeader(request, 'Host', domainName);
        setHeader(request, STATUS_HEADER, String(answer.status));
        setHeader(request, SNAPSHOT_HEADER, id);
        return request;
      }
      case 'balancer': {
        request.origin = {
          custom: {
            domainName: answer.origin,
            port: answer.port,
            protocol: answer.scheme,
            path: '',
            sslProtocols: cfg.balancer.sslProtocols,
            readTimeout: cfg.balancer.readTimeout,
            keepaliveTimeout: cfg.balancer.keepaliveTimeout,
            customHeaders: {},
          },
        };
        // Load balancers route on Host: the viewer's, as sent.
        setHeader(request, 'Host', host);
        setHeader(request, 'X-Forwarded-Host', host);
        setHeader(request, SNAPSHOT_HEADER, id);
        return request;
      }
      case 'redirect':
        return withSnapshot(
          { status: String(answer.status), statusDescription: 'Moved Permanently', headers: { location: [{ key: 'Location', value: answer.location }] } },
          id,
        );
      case 'not_found':
        return withSnapshot(generated('404', 'not found'), id);
      default:
        return withSnapshot(generated('400', `bad request: ${answer.reason}`), id);
    }
  }

  async function originResponse(event) {
    const { request, response } = event.Records[0].cf;
    const id = header(request, SNAPSHOT_HEADER);
    if (id) response.headers[SNAPSHOT_HEADER] = [{ key: 'X-Edgeroute-Snapshot', value: id }];
    const wanted = header(request, STATUS_HEADER);
    if (!wanted) return response; // a load balancer's answer goes out as it is
    // S3's error documents name buckets and keys: never pass them on.
    if (response.status === '404' || (response.status === '403' && cfg.s3403IsMissing)) {
      return withSnapshot(generated('404', 'not found'), id);
    }
    if (response.status === '403') {
      console.error(
        `edgeroute: S3 refused access to ${request.uri} (403); set s3403IsMissing if the origin may not list the bucket`,
      );
      return withSnapshot(generated('502', 'bad gateway: the site\'s storage refused access'), id);
    }
    if (wanted === '404' && response.status === '200') {
      response.status = '404';
      response.statusDescription = 'Not Found';
    }
    return response;
  }

  return { originRequest, originResponse };
}

/** What viewerHost returns when the configured header and the forwarded Host name different hosts. */
export const DISAGREES = Symbol('the viewer host header disagrees with Host');

/**
 * The viewer's host: the configured header (set by a viewer-request
 * function), else Host if it is not the origin's own name; DISAGREES when
 * both are there and differ (a client's own header that the function did not
 * overwrite); null when neither says.
 */
export function viewerHost(request, viewerHostHeader) {
  const host = header(request, 'host');
  const origin = request.origin?.s3?.domainName ?? request.origin?.custom?.domainName;
  // Without a forwarded Host, CloudFront sets the origin's name: routing on it would be a guess.
  const forwarded = host && !(origin && host.toLowerCase() === origin.toLowerCase()) ? host : null;
  const copied = viewerHostHeader ? header(request, viewerHostHeader) : null;
  if (copied && forwarded && copied.toLowerCase() !== forwarded.toLowerCase()) return DISAGREES;
  return copied ?? forwarded;
}

function header(request, name) {
  return request.headers?.[name.toLowerCase()]?.[0]?.value ?? null;
}

function setHeader(request, key, value) {
  request.headers[key.toLowerCase()] = [{ key, value }];
}

function generated(status, body) {
  return {
    status,
    headers: {
      'content-type': [{ key: 'Content-Type', value: 'text/plain; charset=utf-8' }],
      'cache-control': [{ key: 'Cache-Control', value: 'no-store' }],
    },
    body: `${body}\n`,
  };
}

function withSnapshot(response, id) {
  if (id) response.headers[SNAPSHOT_HEADER] = [{ key: 'X-Edgeroute-Snapshot', value: id }];
  return response;
}

// The deployed handlers: config.json and routes.snap beside this file, read once per cold start.
let deployed = null;
async function load() {
  if (!deployed) {
    deployed = (async () => {
      await init();
      const here = new URL('./', import.meta.url);
      const config = JSON.parse(readFileSync(new URL('config.json', here), 'utf8'));
      const bytes = readFileSync(new URL('routes.snap', here));
      const router = Router.fromBytes(bytes);
      const follower = config.store
        ? new Follower({ url: config.store, fallback: router, intervalMs: (config.refreshSeconds ?? 30) * 1000 })
        : null;
      return createHandlers({ router, follower, config });
    })();
    // A failed cold start (say, a damaged routes.snap) is tried again by the next invocation.
    deployed.catch(() => {
      deployed = null;
    });
  }
  return deployed;
}

export const handler = async (event) => (await load()).originRequest(event);
export const originResponseHandler = async (event) => (await load()).originResponse(event);
