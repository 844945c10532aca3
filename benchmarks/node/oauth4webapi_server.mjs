// panva's oauth4webapi as a resource server: node:http, each request handed to
// validateJwtAccessToken (RFC 9068 and RFC 9449 checks, the JWKS fetched once and cached by
// the library), plus a jti replay store (the library leaves replay to its caller).
// Usage: node oauth4webapi_server.mjs PORT (environment: ISSUER, AUDIENCE, PUBLIC_URL,
// JWKS_URI: the issuer's key set on loopback).
import { createServer } from 'node:http'
import * as oauth from 'oauth4webapi'

const port = Number(process.argv[2])
const { ISSUER, AUDIENCE, PUBLIC_URL, JWKS_URI } = process.env
const as = { issuer: ISSUER, jwks_uri: JWKS_URI }
const options = { [oauth.allowInsecureRequests]: true, signingAlgorithms: ['ES256', 'PS256', 'EdDSA'] }
const ACCOUNTS = JSON.stringify({
  subject: 'alice',
  accounts: [
    { account_id: 'acc-1001', currency: 'EUR', nickname: 'Current', balance: '1520.40' },
    { account_id: 'acc-1002', currency: 'EUR', nickname: 'Savings', balance: '9800.00' },
  ],
})

const seen = new Map()
setInterval(() => {
  const now = Date.now() / 1000
  for (const [jti, until] of seen) if (until < now) seen.delete(jti)
}, 1000).unref()

function refuse(res, status, error) {
  res.writeHead(status, {
    'www-authenticate': `DPoP error="${error}"`,
    'cache-control': 'no-store',
    'content-type': 'application/json',
  })
  res.end(JSON.stringify({ error }))
}

createServer(async (req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{"status":"ok"}')
    return
  }
  if (req.url !== '/accounts' || req.method !== 'GET') {
    res.writeHead(404)
    res.end()
    return
  }
  const headers = new Headers()
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === 'string') headers.set(name, value)
  }
  const request = new Request(PUBLIC_URL + req.url, { method: req.method, headers })
  let claims
  try {
    claims = await oauth.validateJwtAccessToken(as, request, AUDIENCE, options)
  } catch {
    refuse(res, 401, 'invalid_token')
    return
  }
  // The proof's jti, once (the library verified the proof; read its payload again).
  const proof = JSON.parse(Buffer.from(req.headers.dpop.split('.')[1], 'base64url'))
  if (seen.has(proof.jti)) {
    refuse(res, 401, 'invalid_dpop_proof')
    return
  }
  seen.set(proof.jti, proof.iat + 300)
  if (!String(claims.scope ?? '').split(' ').includes('read:accounts')) {
    refuse(res, 403, 'insufficient_scope')
    return
  }
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(ACCOUNTS)
}).listen(port, '127.0.0.1')
