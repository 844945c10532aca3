// The hand-written Node.js peer: node:http with panva's `jose`, the RFC 9449 checks written
// out, the issuer's key imported once at start-up. One process, one thread, as one uvicorn
// worker. Usage: node jose_server.mjs PORT (environment: ISSUER, AUDIENCE, PUBLIC_URL,
// ISSUER_JWK: the access-token signing key's public JWK, as JSON).
import { createServer } from 'node:http'
import { createHash } from 'node:crypto'
import { importJWK, jwtVerify, EmbeddedJWK, calculateJwkThumbprint } from 'jose'

const port = Number(process.argv[2])
const { ISSUER, AUDIENCE, PUBLIC_URL } = process.env
const issuerKey = await importJWK(JSON.parse(process.env.ISSUER_JWK), 'ES256')
const PROOF_ALGS = ['ES256', 'PS256', 'EdDSA']
const IAT_WINDOW = 60 // seconds, either side
const ACCOUNTS = JSON.stringify({
  subject: 'alice',
  accounts: [
    { account_id: 'acc-1001', currency: 'EUR', nickname: 'Current', balance: '1520.40' },
    { account_id: 'acc-1002', currency: 'EUR', nickname: 'Savings', balance: '9800.00' },
  ],
})

// The replay store: jti -> expiry (seconds), swept once a second.
const seen = new Map()
setInterval(() => {
  const now = Date.now() / 1000
  for (const [jti, until] of seen) if (until < now) seen.delete(jti)
}, 1000).unref()

function refuse(res, status, error) {
  res.writeHead(status, {
    'www-authenticate': `DPoP error="${error}", algs="${PROOF_ALGS.join(' ')}"`,
    'cache-control': 'no-store',
    'content-type': 'application/json',
  })
  res.end(JSON.stringify({ error }))
}

async function authenticate(req) {
  const authorization = req.headers.authorization
  const proof = req.headers.dpop
  if (typeof authorization !== 'string' || !authorization.startsWith('DPoP ')) return 'invalid_token'
  if (typeof proof !== 'string' || proof.includes(',')) return 'invalid_dpop_proof'
  const token = authorization.slice(5)
  let claims
  try {
    ;({ payload: claims } = await jwtVerify(token, issuerKey, {
      issuer: ISSUER,
      audience: AUDIENCE,
      typ: 'at+jwt',
      algorithms: ['ES256'],
    }))
  } catch {
    return 'invalid_token'
  }
  const jkt = claims.cnf?.jkt
  if (typeof jkt !== 'string') return 'invalid_token'
  let proofClaims, proofHeader
  try {
    ;({ payload: proofClaims, protectedHeader: proofHeader } = await jwtVerify(proof, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: PROOF_ALGS,
    }))
  } catch {
    return 'invalid_dpop_proof'
  }
  const now = Date.now() / 1000
  const { jti, htm, htu, iat, ath } = proofClaims
  if (typeof jti !== 'string' || !jti) return 'invalid_dpop_proof'
  if (htm !== req.method) return 'invalid_dpop_proof'
  if (htu !== PUBLIC_URL + req.url.split('?')[0]) return 'invalid_dpop_proof'
  if (typeof iat !== 'number' || Math.abs(now - iat) > IAT_WINDOW) return 'invalid_dpop_proof'
  if (ath !== createHash('sha256').update(token).digest('base64url')) return 'invalid_dpop_proof'
  if ((await calculateJwkThumbprint(proofHeader.jwk)) !== jkt) return 'invalid_dpop_proof'
  if (seen.has(jti)) return 'invalid_dpop_proof'
  seen.set(jti, iat + IAT_WINDOW)
  const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ') : []
  if (!scopes.includes('read:accounts')) return 'insufficient_scope'
  return null
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
  const error = await authenticate(req)
  if (error !== null) {
    refuse(res, error === 'insufficient_scope' ? 403 : 401, error)
    return
  }
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(ACCOUNTS)
}).listen(port, '127.0.0.1')
