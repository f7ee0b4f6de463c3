import t from 'tap'
import { bearerToken, MAX_BEARER_TOKEN_LENGTH, type BearerRequest } from '../lib/http/bearer-token.js'

/** Only the two fields bearerToken reads: no Fastify needed. */
function request (headers: BearerRequest['headers'] = {}, query: unknown = {}): BearerRequest {
  return { headers, query }
}

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl-_'

t.test('Authorization: Bearer', async (t) => {
  t.equal(bearerToken(request({ authorization: `Bearer ${JWT}` })), JWT)
  t.equal(bearerToken(request({ authorization: `bearer   ${JWT}  ` })), JWT, 'the scheme is case-insensitive; spaces are trimmed')
  for (const bad of ['Bearer', 'Bearer ', 'Bearer    ', 'Bearer a b', 'Bearer a\tb', 'Bearer é']) {
    t.equal(bearerToken(request({ authorization: bad }, { access_token: 'fallback' })), null, `${JSON.stringify(bad)}: malformed, and nothing further down is used`)
  }
  t.equal(bearerToken(request({ authorization: 'Basic dXNlcjpwYXNz' }, { access_token: 'q' })), 'q', 'another scheme is not a bearer token: look further')
  t.equal(bearerToken(request({ authorization: 'Bearerx' }, { access_token: 'q' })), 'q', 'a scheme that only starts with "bearer" is another scheme')
})

t.test('Sec-WebSocket-Protocol bearer.<token>, as HubClient sends it', async (t) => {
  t.equal(bearerToken(request({ 'sec-websocket-protocol': `ws-hub.v1, bearer.${JWT}` })), JWT)
  t.equal(bearerToken(request({ 'sec-websocket-protocol': `bearer.${JWT},ws-hub.v1.batch` })), JWT, 'any position, with or without spaces')
  t.equal(bearerToken(request({ 'sec-websocket-protocol': 'ws-hub.v1' }, { access_token: 'q' })), 'q', 'no bearer entry: look further')
  t.equal(bearerToken(request({ 'sec-websocket-protocol': 'ws-hub.v1, bearer.' }, { access_token: 'q' })), null, 'an empty token')
  t.equal(bearerToken(request({ 'sec-websocket-protocol': 'bearer.a, bearer.b' })), null, 'two tokens are ambiguous')
  t.equal(bearerToken(request({ 'sec-websocket-protocol': 'Bearer.a' })), null, 'the prefix is exactly what the client sends')
})

t.test('query: access_token, then token', async (t) => {
  t.equal(bearerToken(request({}, { access_token: JWT })), JWT)
  t.equal(bearerToken(request({}, { token: JWT })), JWT, 'the name the example and the logs redaction use')
  t.equal(bearerToken(request({}, { access_token: 'a', token: 't' })), 'a')
  t.equal(bearerToken(request({}, { access_token: ['a', 'b'] })), null, 'a repeated parameter is ambiguous')
  t.equal(bearerToken(request({}, { access_token: '  ' })), null)
  t.equal(bearerToken(request({}, { other: 'x' })), null)
  t.equal(bearerToken(request({}, undefined)), null, 'a route with no query')
  t.equal(bearerToken(request({}, Object.create({ access_token: 'inherited' }))), null, 'only own properties')
})

t.test('order: header, then subprotocol, then query', async (t) => {
  const all = request({ authorization: 'Bearer h', 'sec-websocket-protocol': 'ws-hub.v1, bearer.p' }, { access_token: 'q' })
  t.equal(bearerToken(all), 'h')
  t.equal(bearerToken(request({ 'sec-websocket-protocol': 'bearer.p' }, { access_token: 'q' })), 'p')
  t.equal(bearerToken(request()), null, 'nothing sent')
})

t.test('length: up to MAX_BEARER_TOKEN_LENGTH', async (t) => {
  const longest = 'x'.repeat(MAX_BEARER_TOKEN_LENGTH)
  t.equal(bearerToken(request({ authorization: `Bearer ${longest}` })), longest)
  t.equal(bearerToken(request({ authorization: `Bearer ${longest}x` })), null)
  t.equal(bearerToken(request({}, { access_token: `${longest}x` })), null)
  t.equal(bearerToken(request({ 'sec-websocket-protocol': `bearer.${longest}x` })), null)
})
