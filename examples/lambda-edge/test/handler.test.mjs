// The Lambda@Edge handlers on CloudFront events of the documented shapes
// (origin-request and origin-response, S3 and custom origins), with and
// without the viewer's Host forwarded, and the packaged function as deployed.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { Router, init } from '../../../edge-js/pkg/index.js';
import { apply, compile, publish, root, scratch } from '../../../edge-js/test/support.mjs';
import { createHandlers, viewerHost } from '../index.mjs';

await init();
const [demo, demoPath] = compile(join(root, 'snapshots/demo.jsonl'));
const router = Router.fromBytes(demo);
const { originRequest, originResponse } = createHandlers({ router });
const ID = router.id.slice(0, 12);

const DEFAULT_S3 = 'default-origin-bucket.s3.us-east-1.amazonaws.com';

/** An origin-request event as CloudFront sends it; `host` is the Host header it carries. */
function originRequestEvent({ host = DEFAULT_S3, uri = '/', querystring = '', method = 'GET', extra = {}, origin } = {}) {
  const headers = {
    'x-forwarded-for': [{ key: 'X-Forwarded-For', value: '203.0.113.178' }],
    'user-agent': [{ key: 'User-Agent', value: 'Amazon CloudFront' }],
    via: [{ key: 'Via', value: '2.0 2afae0d44e2540f472c0635ab62c232b.cloudfront.net (CloudFront)' }],
  };
  if (host !== null) headers.host = [{ key: 'Host', value: host }];
  for (const [name, value] of Object.entries(extra)) headers[name.toLowerCase()] = [{ key: name, value }];
  return {
    Records: [
      {
        cf: {
          config: {
            distributionDomainName: 'd111111abcdef8.cloudfront.net',
            distributionId: 'EDFDVBD6EXAMPLE',
            eventType: 'origin-request',
            requestId: '4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ==',
          },
          request: {
            clientIp: '203.0.113.178',
            headers,
            method,
            origin: origin ?? {
              s3: { authMethod: 'origin-access-identity', customHeaders: {}, domainName: DEFAULT_S3, path: '', region: 'us-east-1' },
            },
            querystring,
            uri,
          },
        },
      },
    ],
  };
}

function originResponseEvent(request, status, headers = {}) {
  return {
    Records: [
      {
        cf: {
          config: { distributionDomainName: 'd111111abcdef8.cloudfront.net', distributionId: 'EDFDVBD6EXAMPLE', eventType: 'origin-response', requestId: 'x' },
          request,
          response: { status, statusDescription: status === '200' ? 'OK' : 'Error', headers },
        },
      },
    ],
  };
}

const h = (r, name) => r.headers[name.toLowerCase()]?.[0]?.value;

test('a static site: the S3 origin and key, with the viewer\'s Host forwarded', async () => {
  const request = await originRequest(originRequestEvent({ host: 'env-123.example.com', uri: '/about/' }));
  assert.deepEqual(request.origin, {
    s3: { domainName: 'acme-static-sites.s3.us-east-1.amazonaws.com', region: 'us-east-1', authMethod: 'origin-access-identity', path: '', customHeaders: {} },
  });
  assert.equal(request.uri, '/env-123/about/index.html');
  assert.equal(h(request, 'host'), 'acme-static-sites.s3.us-east-1.amazonaws.com', 'S3 needs its own Host');
  assert.equal(h(request, 'x-edgeroute-snapshot'), ID);
  assert.equal(h(request, 'x-edgeroute-status'), '200');

  // Keys are percent-encoded into the URI; the query is not sent to S3.
  const unicode = await originRequest(originRequestEvent({ host: 'xn--bcher-kva.example.com', uri: '/%C3%BCber-uns.html', querystring: 'a=1' }));
  assert.equal(unicode.uri, '/buecher/%C3%BCber-uns.html');
  assert.equal(unicode.querystring, '');

  // An SPA route falls back to index.html; a site's 404 page is marked for origin-response.
  const spa = await originRequest(originRequestEvent({ host: 'env-456.example.com', uri: '/settings/profile' }));
  assert.equal(spa.uri, '/env-456/index.html');
  const missing = await originRequest(originRequestEvent({ host: 'env-123.example.com', uri: '/nope' }));
  assert.equal(missing.uri, '/env-123/404.html');
  assert.equal(h(missing, 'x-edgeroute-status'), '404');
});

test('the viewer\'s host from a viewer-request function\'s header, when Host is the origin\'s', async () => {
  const event = originRequestEvent({ host: DEFAULT_S3, extra: { 'X-Viewer-Host': 'env-123.example.com' } });
  const { originRequest } = createHandlers({ router, config: { viewerHostHeader: 'x-viewer-host' } });
  const request = await originRequest(event);
  assert.equal(request.uri, '/env-123/index.html');
});

test('a client\'s own x-viewer-host is never trusted: the shipped settings leave viewerHostHeader unset', async () => {
  const shipped = JSON.parse(readFileSync(join(root, 'examples/lambda-edge/config.json'), 'utf8'));
  assert.equal(shipped.viewerHostHeader ?? null, null, 'config.json names a header any client can send');
  // With the shipped settings, and with the defaults, the forwarded Host decides whatever the client sends.
  for (const handlers of [createHandlers({ router, config: shipped }), createHandlers({ router })]) {
    const spoofed = originRequestEvent({ host: 'env-123.example.com', extra: { 'X-Viewer-Host': 'shop.example.com' } });
    const request = await handlers.originRequest(spoofed);
    assert.equal(request.uri, '/env-123/index.html', 'a client picked its route with x-viewer-host');
  }
  // Set (a viewer-request function copies Host into it): a forwarded Host that disagrees is a 400.
  const configured = createHandlers({ router, config: { viewerHostHeader: 'x-viewer-host' } });
  const disagreeing = originRequestEvent({ host: 'env-123.example.com', extra: { 'X-Viewer-Host': 'shop.example.com' } });
  const response = await configured.originRequest(disagreeing);
  assert.equal(response.status, '400');
  assert.match(response.body, /x-viewer-host disagrees with the Host/);
  // Agreeing (case aside), or no forwarded Host (the origin's own name): the header decides.
  const agreeing = originRequestEvent({ host: 'ENV-123.example.com', extra: { 'X-Viewer-Host': 'env-123.example.com' } });
  assert.equal((await configured.originRequest(agreeing)).uri, '/env-123/index.html');
  const copied = originRequestEvent({ host: DEFAULT_S3, extra: { 'X-Viewer-Host': 'env-123.example.com' } });
  assert.equal((await configured.originRequest(copied)).uri, '/env-123/index.html');
});

test('without the viewer\'s Host the handler refuses to guess', async () => {
  const logged = [];
  const error = console.error;
  console.error = (message) => logged.push(message);
  try {
    for (const event of [
      originRequestEvent({ host: DEFAULT_S3 }), // CloudFront set the origin's name
      originRequestEvent({ host: DEFAULT_S3.toUpperCase() }),
      originRequestEvent({ host: 'lb.example.net', origin: { custom: { domainName: 'lb.example.net', port: 443, protocol: 'https', path: '', customHeaders: {} } } }),
      originRequestEvent({ host: null }),
    ]) {
      const response = await originRequest(event);
      assert.equal(response.status, '502');
      assert.match(response.body, /cannot see the requested host/);
    }
  } finally {
    console.error = error;
  }
  assert.equal(logged.length, 4);
  assert.match(logged[0], /forward the Host header .* or copy it into a header .* viewerHostHeader/);
  assert.equal(viewerHost({ headers: {} }, 'x-viewer-host'), null);
});

test('a load balancer: a custom origin, the viewer\'s Host kept', async () => {
  const request = await originRequest(originRequestEvent({ host: 'api-t9yhp25-portal.example.com', uri: '/v1/items', querystring: 'page=2', method: 'POST' }));
  assert.deepEqual(request.origin.custom, {
    domainName: 'preview-envs-1234567890.us-east-1.elb.amazonaws.com',
    port: 8080,
    protocol: 'http',
    path: '',
    sslProtocols: ['TLSv1.2'],
    readTimeout: 30,
    keepaliveTimeout: 5,
    customHeaders: {},
  });
  assert.equal(h(request, 'host'), 'api-t9yhp25-portal.example.com');
  assert.equal(h(request, 'x-forwarded-host'), 'api-t9yhp25-portal.example.com');
  assert.equal(request.uri, '/v1/items');
  assert.equal(request.querystring, 'page=2');
  assert.equal(request.method, 'POST');
  const wildcard = await originRequest(originRequestEvent({ host: 'feature-x.previews.example.com' }));
  assert.equal(wildcard.origin.custom.domainName, 'previews-ingress.example.net');
  assert.equal(wildcard.origin.custom.port, 443);
  assert.equal(wildcard.origin.custom.protocol, 'https');
});

test('redirects, unknown hosts and bad requests are answered at the edge', async () => {
  const redirect = await originRequest(originRequestEvent({ host: 'env-123.example.com', uri: '/about', querystring: 'x=1' }));
  assert.equal(redirect.status, '301');
  assert.equal(h(redirect, 'location'), '/about/?x=1');
  assert.equal(h(redirect, 'x-edgeroute-snapshot'), ID);

  const unknown = await originRequest(originRequestEvent({ host: 'nobody.example.org' }));
  assert.equal(unknown.status, '404');
  assert.equal(unknown.body, 'not found\n');

  const bad = await originRequest(originRequestEvent({ host: 'env-123.example.com', uri: '/a/../../etc/passwd' }));
  assert.equal(bad.status, '400');
  assert.equal(bad.body, 'bad request: path_dot_segment\n');
  const badHost = await originRequest(originRequestEvent({ host: 'x.example.com@evil.net' }));
  assert.equal(badHost.body, 'bad request: host_bad_char\n');
});

test('origin-response: a site\'s 404 page gets its status, S3 errors never pass, balancers untouched', async () => {
  const page = await originRequest(originRequestEvent({ host: 'env-123.example.com', uri: '/nope' }));
  const r404 = await originResponse(originResponseEvent(page, '200', { 'content-type': [{ key: 'Content-Type', value: 'text/html' }] }));
  assert.equal(r404.status, '404');
  assert.equal(h(r404, 'x-edgeroute-snapshot'), ID);

  const asset = await originRequest(originRequestEvent({ host: 'docs.example.com', uri: '/missing.html' }));
  const xml = '<Error><Code>NoSuchKey</Code><BucketName>acme-docs</BucketName></Error>';
  const missing = await originResponse({ ...originResponseEvent(asset, '404'), body: xml });
  assert.equal(missing.status, '404');
  assert.equal(missing.body, 'not found\n');

  const proxied = await originRequest(originRequestEvent({ host: 'api-t9yhp25-portal.example.com' }));
  const upstream = await originResponse(originResponseEvent(proxied, '503'));
  assert.equal(upstream.status, '503', 'a load balancer\'s answer goes out as it is');
  assert.equal(h(upstream, 'x-edgeroute-snapshot'), ID);
});

test('origin-response: S3\'s 403 is a 502 (never a silent 404) unless s3403IsMissing says it means missing', async () => {
  const asset = await originRequest(originRequestEvent({ host: 'docs.example.com', uri: '/missing.html' }));
  const xml = '<Error><Code>AccessDenied</Code><BucketName>acme-docs</BucketName></Error>';
  const denied = await originResponse({ ...originResponseEvent(asset, '403'), body: xml });
  assert.equal(denied.status, '502');
  assert.match(denied.body, /refused access/);
  assert.doesNotMatch(denied.body, /AccessDenied|acme-docs/);

  const lenient = createHandlers({ router, config: { s3403IsMissing: true } });
  const missing = await lenient.originResponse({ ...originResponseEvent(asset, '403'), body: xml });
  assert.equal(missing.status, '404');
  assert.equal(missing.body, 'not found\n');
});

// The packaged function, as Lambda loads it: config.json and routes.snap beside index.mjs.
const servers = [];
after(() => servers.forEach((s) => s.close()));

test('the packaged function serves its bundled snapshot, then follows the store', async () => {
  const store = scratch('lambda-store');
  const server = createServer((req, res) => {
    try {
      res.end(readFileSync(join(store, new URL(req.url, 'http://x').pathname)));
    } catch {
      res.writeHead(404).end();
    }
  });
  servers.push(server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const dir = scratch('lambda-dist');
  const config = join(dir, 'config.json');
  const store_url = `http://127.0.0.1:${server.address().port}`;
  writeFileSync(config, JSON.stringify({ store: store_url, refreshSeconds: 0, coldStartWaitMs: 2000 }));
  const dist = join(dir, 'dist');
  execFileSync(join(root, 'examples/lambda-edge/package.sh'), [demoPath, config, dist], { stdio: 'ignore' });

  const deployed = await import(join(dist, 'index.mjs'));
  // The store is empty: the bundled snapshot answers.
  const error = console.error;
  console.error = () => {};
  let request;
  try {
    request = await deployed.handler(originRequestEvent({ host: 'env-123.example.com' }));
  } finally {
    console.error = error;
  }
  assert.equal(request.uri, '/env-123/index.html');
  assert.equal(h(request, 'x-edgeroute-snapshot'), ID);

  // A new table is published: a later request is answered from it.
  const [, next] = compile('{"Domain": "new-env.example.com", "Target": "s3://fresh-bucket"}\n');
  publish(next, store);
  let answer;
  for (let i = 0; i < 100; i++) {
    answer = await deployed.handler(originRequestEvent({ host: 'new-env.example.com' }));
    if (answer.uri) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(answer.uri, '/index.html');
  assert.equal(answer.origin.s3.domainName, 'fresh-bucket.s3.us-east-1.amazonaws.com');
  const response = await deployed.originResponseHandler(originResponseEvent(answer, '200'));
  assert.equal(response.status, '200');
});

test('the packaged function follows layers on its bundled base without fetching a base', async () => {
  const store = scratch('lambda-layers');
  const fetched = [];
  const server = createServer((req, res) => {
    fetched.push(req.url);
    try {
      res.end(readFileSync(join(store, new URL(req.url, 'http://x').pathname)));
    } catch {
      res.writeHead(404).end();
    }
  });
  servers.push(server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  // The store's base is the one the function ships; a change is a layer on it.
  publish(demoPath, store);
  apply('{"Domain": "layered.example.com", "Target": "s3://layer-bucket"}\n{"Domain": "env-123.example.com", "Deleted": true}\n', store);
  const dir = scratch('lambda-layers-dist');
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ store: `http://127.0.0.1:${server.address().port}`, refreshSeconds: 0, coldStartWaitMs: 2000 }));
  const dist = join(dir, 'dist');
  execFileSync(join(root, 'examples/lambda-edge/package.sh'), [demoPath, config, dist], { stdio: 'ignore' });
  const deployed = await import(join(dist, 'index.mjs'));
  const answer = await deployed.handler(originRequestEvent({ host: 'layered.example.com' }));
  assert.equal(answer.origin.s3.domainName, 'layer-bucket.s3.us-east-1.amazonaws.com');
  const gone = await deployed.handler(originRequestEvent({ host: 'env-123.example.com' }));
  assert.equal(gone.status, '404');
  const state = JSON.parse(readFileSync(join(store, 'current.json'), 'utf8')).state;
  assert.equal(h(answer, 'x-edgeroute-snapshot'), state.slice(0, 12));
  assert.ok(fetched.some((u) => u.startsWith('/layers/')), fetched.join(' '));
  assert.ok(!fetched.some((u) => u.startsWith('/snapshots/')), `no base fetched: ${fetched.join(' ')}`);
});
