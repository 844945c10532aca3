// A test authorization server: client credentials with DPoP, RFC 7662 introspection, and
// RFC 9068 JWT access tokens for the resource "https://jwt.bank.test".
// Usage: node server.mjs PORT  (prints "listening <issuer>" when ready)
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [
    // The resource server, for introspection (client_secret_basic).
    { client_id: 'rs', client_secret: 'rs-secret-0123456789abcdef', grant_types: [],
      response_types: [], redirect_uris: [], id_token_signed_response_alg: 'ES256' },
    // The client application.
    { client_id: 'app', client_secret: 'app-secret-0123456789abcdef',
      grant_types: ['client_credentials'], response_types: [], redirect_uris: [],
      scope: 'read:accounts read:balances', id_token_signed_response_alg: 'ES256' },
  ],
  scopes: ['read:accounts', 'read:balances'],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    dPoP: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://api.bank.test',
      getResourceServerInfo: (ctx, resource) => ({
        scope: 'read:accounts read:balances',
        accessTokenFormat: resource === 'https://jwt.bank.test' ? 'jwt' : 'opaque',
        ...(resource === 'https://jwt.bank.test' ? { jwt: { sign: { alg: 'ES256' } } } : {}),
      }),
    },
  },
  jwks: { keys: [JSON.parse(process.env.AS_SIGNING_KEY)] },
});
provider.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
