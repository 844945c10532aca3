// A test authorization server: client credentials with DPoP, RFC 7662 introspection, and
// RFC 9068 JWT access tokens for the resource "https://jwt.bank.test"; and, for the clients
// in AS_FAPI_CLIENTS, the FAPI 2.0 Security Profile (PAR required, private_key_jwt, PKCE
// S256, DPoP-bound tokens only, iss in the response), with login and consent granted
// automatically to the user "alice".
// Usage: node server.mjs PORT  (prints "listening <issuer>" when ready)
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const issuer = `http://127.0.0.1:${port}`;
// [{client_id, jwks: {keys: [...]}, redirect_uris: [...]}], public keys only.
const fapiClients = JSON.parse(process.env.AS_FAPI_CLIENTS || '[]');
const fapiIds = new Set(fapiClients.map((c) => c.client_id));
const provider = new Provider(issuer, {
  clients: [
    ...fapiClients.map((c) => ({
      client_id: c.client_id,
      jwks: c.jwks,
      redirect_uris: c.redirect_uris,
      token_endpoint_auth_method: 'private_key_jwt',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      require_pushed_authorization_requests: true,
      dpop_bound_access_tokens: true,
      scope: 'read:accounts read:balances',
      id_token_signed_response_alg: 'ES256',
    })),
    // The resource server, for introspection (client_secret_basic).
    { client_id: 'rs', client_secret: 'rs-secret-0123456789abcdef', grant_types: [],
      response_types: [], redirect_uris: [], id_token_signed_response_alg: 'ES256' },
    // The client application.
    { client_id: 'app', client_secret: 'app-secret-0123456789abcdef',
      grant_types: ['client_credentials'], response_types: [], redirect_uris: [],
      scope: 'read:accounts read:balances', id_token_signed_response_alg: 'ES256' },
  ],
  // RFC 9701: asked with Accept: application/token-introspection+jwt, the introspection
  // endpoint answers with a JWT signed ES256 (the only key; RS256 is the default otherwise).
  // The other members are oidc-provider's own defaults (clientDefaults replaces them all).
  clientDefaults: {
    grant_types: ['authorization_code'], id_token_signed_response_alg: 'RS256',
    response_types: ['code'], token_endpoint_auth_method: 'client_secret_basic',
    introspection_signed_response_alg: 'ES256',
  },
  scopes: ['read:accounts', 'read:balances'],
  features: {
    // Per client: the FAPI 2.0 profile for the FAPI clients only, so the RFC 7662 tests'
    // client_secret_basic clients keep working.
    fapi: { enabled: true, profile: (ctx, client) => (client && fapiIds.has(client.clientId) ? '2.0' : undefined) },
    pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    jwtIntrospection: { enabled: true }, // RFC 9701
    dPoP: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://api.bank.test',
      // The code's token is for the resource granted at the authorization request.
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({
        scope: 'read:accounts read:balances',
        accessTokenFormat: resource === 'https://jwt.bank.test' ? 'jwt' : 'opaque',
        ...(resource === 'https://jwt.bank.test' ? { jwt: { sign: { alg: 'ES256' } } } : {}),
      }),
    },
  },
  jwks: { keys: [JSON.parse(process.env.AS_SIGNING_KEY)] },
});
// The interaction: log "alice" in and grant what was asked, with no page (the FAPI flow
// under test is the client's; the consent UI is tested against our own example server).
provider.use(async (ctx, next) => {
  if (ctx.method !== 'GET' || !/^\/interaction\/[^/]+$/.test(ctx.path)) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  let result;
  if (details.prompt.name === 'login') {
    result = { login: { accountId: 'alice' } };
  } else {
    const grant = new provider.Grant({
      accountId: details.session.accountId, clientId: details.params.client_id,
    });
    const missing = details.prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    for (const [resource, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(resource, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
});
provider.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
