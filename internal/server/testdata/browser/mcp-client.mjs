// mcp-client.mjs is a stock MCP client for the browser sign-in test: the
// TypeScript SDK's Client over StreamableHTTPClientTransport with the
// SDK's own OAuth client (its auth flow). Instead of opening a browser it
// prints the authorization URL; it takes the code at its own loopback
// redirect listener. It reports each step as a JSON line on stdout and
// waits for "again" on stdin before its last call. Usage:
//
//   node mcp-client.mjs SERVER_URL FILE [CLIENT_METADATA_URL]
//
// Without CLIENT_METADATA_URL the SDK registers itself (RFC 7591).
import http from 'node:http';
import readline from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const [serverURL, file, metadataURL] = process.argv.slice(2);
const say = (event, more = {}) => console.log(JSON.stringify({ event, ...more }));

let codeArrived;
const code = new Promise((resolve) => { codeArrived = resolve; });
const callback = http.createServer((req, res) => {
  const q = new URL(req.url, 'http://127.0.0.1').searchParams;
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(q.get('code') ? 'Signed in: you can close this window.' : `Refused: ${q.get('error')}`);
  codeArrived(q);
});
await new Promise((resolve) => callback.listen(0, '127.0.0.1', resolve));
const redirectURL = `http://127.0.0.1:${callback.address().port}/callback`;
say('redirect', { url: redirectURL });

const saved = {};
const provider = {
  get redirectUrl() { return redirectURL; },
  clientMetadataUrl: metadataURL,
  get clientMetadata() {
    return { client_name: 'TypeScript SDK client', redirect_uris: [redirectURL], grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], token_endpoint_auth_method: 'none' };
  },
  state: () => 'st-' + Math.random().toString(36).slice(2),
  clientInformation: () => saved.client,
  saveClientInformation: (c) => { saved.client = c; },
  tokens: () => saved.tokens,
  saveTokens: (t) => { saved.tokens = t; },
  redirectToAuthorization: (u) => say('authorize', { url: u.toString() }),
  saveCodeVerifier: (v) => { saved.verifier = v; },
  codeVerifier: () => saved.verifier,
  invalidateCredentials: (scope) => { if (scope === 'all' || scope === 'tokens') delete saved.tokens; },
};

async function connect() {
  const client = new Client({ name: 'browser-test', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(serverURL), { authProvider: provider });
  try {
    await client.connect(transport);
    return client;
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
    const q = await code;
    say('code', { iss: q.get('iss'), error: q.get('error') });
    await transport.finishAuth(q.get('code'));
    const again = new Client({ name: 'browser-test', version: '1' });
    await again.connect(new StreamableHTTPClientTransport(new URL(serverURL), { authProvider: provider }));
    return again;
  }
}

const read = async (client) => {
  const res = await client.callTool({ name: 'read_text_file', arguments: { path: file } });
  return res.content.map((c) => c.text).join('');
};

try {
  const client = await connect();
  say('client', { client_id: saved.client.client_id });
  const { tools } = await client.listTools();
  say('tools', { names: tools.map((t) => t.name) });
  say('read', { text: await read(client) });

  const before = saved.tokens;
  say('refresh', { result: await auth(provider, { serverUrl: serverURL }),
    rotated: saved.tokens.refresh_token !== before.refresh_token, renewed: saved.tokens.access_token !== before.access_token });
  const fresh = await connect();
  say('read-after-refresh', { text: await read(fresh) });

  say('ready');
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) if (line === 'again') break;
  const resp = await fetch(serverURL, { method: 'POST', headers: { Authorization: `Bearer ${saved.tokens.access_token}`,
    'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }) });
  say('after-end', { status: resp.status, www_authenticate: resp.headers.get('www-authenticate') });
  try {
    await read(fresh);
    say('sdk-after-end', { ok: true });
  } catch (err) {
    say('sdk-after-end', { ok: false, unauthorized: err instanceof UnauthorizedError, error: String(err) });
  }
} catch (err) {
  say('error', { error: String(err && err.stack || err) });
} finally {
  callback.close();
  process.exit(0);
}
