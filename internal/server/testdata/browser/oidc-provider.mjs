// oidc-provider.mjs runs npm's oidc-provider (a certified OpenID Provider)
// for the browser sign-in test on the listening socket passed as fd 3,
// with one person (login "alice") and mandate as its confidential client.
// Its own development sign-in and consent pages are what the browser
// fills in. Usage: node oidc-provider.mjs ISSUER REDIRECT_URI CLIENT_SECRET
import http from 'node:http';
import Provider from 'oidc-provider';

const [issuer, redirectURI, clientSecret] = process.argv.slice(2);
const people = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Example', groups: ['engineering'] },
};
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'mandate', client_secret: clientSecret, redirect_uris: [redirectURI],
    response_types: ['code'], grant_types: ['authorization_code'],
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
  conformIdTokenClaims: false,
  cookies: { keys: ['browser-test-cookie-key-0123456789'] },
  findAccount: async (_ctx, id) => people[id] && { accountId: id, claims: async () => ({ sub: id, ...people[id] }) },
  features: { devInteractions: { enabled: true } },
});
http.createServer(provider.callback()).listen({ fd: 3 }, () => console.log('ready'));
