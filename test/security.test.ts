import t from 'tap'
import { build, connect, handshakeStatus, TestClient, until } from './helpers.js'
import type { Authenticate, Identity } from '../lib/index.js'
import { internalsOf } from '../lib/internals.js'

/** Tokens of the form `user:<id>`; `expired` and garbage are refused. */
const authenticate: Authenticate = async (request) => {
  const header = request.headers.authorization
  const token = header?.startsWith('Bearer ') === true ? header.slice(7) : new URL(request.url, 'http://x').searchParams.get('token')
  if (token === null || token === undefined || !token.startsWith('user:')) return null
  return { userId: token.slice(5), role: 'member' }
}
const bearer = (user: string) => ({ headers: { authorization: `Bearer user:${user}` } })

t.test('authenticate: the identity reaches welcome, listings and frames', async (t) => {
  const { wsUrl, url } = await build(t, { authenticate })
  const alice = new TestClient(wsUrl, bearer('alice'))
  const welcome = await alice.next('welcome')
  t.equal(welcome.userId, 'alice')
  alice.clientId = String(welcome.clientId)
  const bob = await connect(wsUrl, bearer('bob'))
  alice.send({ type: 'broadcast', message: 'hi', from: 'forged', fromUser: 'root' })
  const got = await bob.next('message')
  t.equal(got.from, alice.clientId, 'from is the server-assigned id')
  t.equal(got.fromUser, 'alice', 'fromUser is the authenticated user, not what the client wrote')
  const list = await (await fetch(`${url}/api/connections`)).json() as { connections: Array<{ userId: string }> }
  t.same(list.connections.map((c) => c.userId).sort(), ['alice', 'bob'])
})

t.test('authenticate: null, throw, garbage or missing token -> 401 with a JSON body, slot released', async (t) => {
  const { wsUrl, app } = await build(t, {
    authenticate: async (request) => {
      if (request.headers.authorization === 'Bearer boom') throw new Error('auth backend down')
      return authenticate(request)
    }
  })
  for (const options of [{}, { headers: { authorization: 'Bearer expired' } }, { headers: { authorization: 'Bearer boom' } }, { headers: { authorization: 'garbage' } }]) {
    const r = await handshakeStatus(wsUrl, options)
    t.equal(r.status, 401)
    t.same(JSON.parse(r.body ?? '{}'), { statusCode: 401, error: 'Unauthorized', code: 'unauthenticated', message: 'missing, invalid or expired credentials' })
  }
  await until(async () => (await internalsOf(app.wsHub).cluster.limiter.totalCount()) === 0)
  t.equal(app.wsHub.stats().handshakes.rejectedUnauthenticated, 4)
})

t.test('a token in the query string never reaches the logs', async (t) => {
  const lines: string[] = []
  const stream = { write: (line: string) => { lines.push(line) } }
  const { redactedRequestSerializer } = await import('../lib/index.js')
  const byToken: Authenticate = (request) => new URL(request.url, 'http://x').searchParams.get('token') === 'secret-123' ? { userId: 'alice' } : null
  const { wsUrl } = await build(t, { authenticate: byToken }, { logger: { level: 'trace', stream, serializers: { req: redactedRequestSerializer } } })
  const ok = await connect(`${wsUrl}?v=1&token=secret-123&x=2`)
  const refused = await handshakeStatus(`${wsUrl}?token=nope-secret-token`)
  t.equal(refused.status, 401)
  ok.close()
  await ok.closed
  await until(() => lines.some((l) => l.includes('connection closed')))
  t.ok(lines.length > 3, 'something was logged')
  t.same(lines.filter((l) => l.includes('secret')), [], 'no token in any log line')
  t.ok(lines.some((l) => l.includes('?v=1&token=[redacted]&x=2')), 'the URL is logged with only the token redacted')
})

t.test('subprotocol carrying a token: the response names only the application protocol', async (t) => {
  const { wsUrl } = await build(t, {
    authenticate: async (request) => {
      const offered = String(request.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim())
      const token = offered.find((p) => p.startsWith('bearer.'))
      return token === undefined ? null : { userId: token.slice('bearer.'.length) }
    }
  })
  const client = new TestClient(wsUrl, ['bearer.carol', 'ws-hub.v1'] as never)
  const welcome = await client.next('welcome')
  t.equal(welcome.userId, 'carol')
  t.equal(client.socket.protocol, 'ws-hub.v1')
  const raw = await new Promise<string>((resolve) => {
    const socket = new TestClient(wsUrl, ['bearer.carol', 'ws-hub.v1'] as never).socket
    socket.on('upgrade', (res) => resolve(JSON.stringify(res.headers)))
  })
  t.notMatch(raw, /carol/, 'the token is not echoed in any response header')
  t.match(raw, /"sec-websocket-protocol":"ws-hub\.v1"/)
})

t.test('maxConnectionsPerUser: over it -> 429, and sendToUser reaches every connection of the user and no one else', async (t) => {
  const { wsUrl, url } = await build(t, { authenticate, maxConnectionsPerUser: 3 })
  const alices = await Promise.all([1, 2, 3].map(async () => connect(wsUrl, bearer('alice'))))
  const bob = await connect(wsUrl, bearer('bob'))
  const fourth = await handshakeStatus(wsUrl, bearer('alice'))
  t.equal(fourth.status, 429)
  t.equal(JSON.parse(fourth.body ?? '{}').code, 'user_limit')

  const res = await fetch(`${url}/api/users/alice/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: 'for alice' }) })
  t.same(await res.json(), { recipients: 3, remoteInstances: 0 })
  for (const a of alices) t.match(await a.next('direct'), { from: 'server', user: 'alice', message: 'for alice' })
  t.ok(await bob.nothingBefore('direct'))

  bob.send({ type: 'direct', user: 'alice', message: 'from bob', id: 1 })
  for (const a of alices) t.match(await a.next('direct'), { from: bob.clientId, fromUser: 'bob', user: 'alice', message: 'from bob' })
  t.equal((await bob.next('ack')).id, 1)
  bob.send({ type: 'direct', user: 'nobody', message: 'x', id: 2 })
  t.match(await bob.next('error'), { code: 'unknown_target', id: 2 })
  bob.send({ type: 'direct', user: 'alice', target: alices[0]?.clientId, message: 'x', id: 3 })
  t.match(await bob.next('error'), { code: 'invalid_message', id: 3 })
  t.equal((await fetch(`${url}/api/users/nobody/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"message":1}' })).status, 404)

  const del = await fetch(`${url}/api/users/alice`, { method: 'DELETE' })
  t.equal(del.status, 204)
  for (const a of alices) t.same(await a.closed, { code: 4000, reason: 'closed by server' })
  t.equal(bob.socket.readyState, 1, 'other users keep their sockets')
  t.equal((await fetch(`${url}/api/users/alice`, { method: 'DELETE' })).status, 404)
})

t.test('revalidation closes expired sessions with 1008', async (t) => {
  const revoked = new Set<string>()
  // Passes are counted, not timed: a busy machine only makes them slower.
  const passes = new Map<string, number>()
  const { wsUrl, app } = await build(t, {
    authenticate,
    revalidate: async (identity: Identity) => {
      passes.set(identity.userId, (passes.get(identity.userId) ?? 0) + 1)
      return !revoked.has(identity.userId)
    },
    revalidateInterval: 30
  })
  const alice = await connect(wsUrl, bearer('alice'))
  const bob = await connect(wsUrl, bearer('bob'))
  await until(() => (passes.get('alice') ?? 0) >= 3, 10_000, 'three revalidation passes')
  t.equal(alice.socket.readyState, 1, 'valid sessions survive several passes')
  revoked.add('alice')
  t.same(await alice.closed, { code: 1008, reason: 'session expired' })
  t.equal(bob.socket.readyState, 1)
  t.ok(app.wsHub.stats().revalidationCloses >= 1)
})

t.test('allowedOrigins: exact match only, 403 before any slot is taken', async (t) => {
  const { wsUrl, app } = await build(t, { allowedOrigins: ['https://chat.example.com'], maxConnectionsPerIp: 2 })
  const ok = await handshakeStatus(wsUrl, { origin: 'https://chat.example.com' })
  t.equal(ok.status, 101)
  const refused = [
    'https://chat.example.com.evil.net',
    'https://evil-chat.example.com',
    'http://chat.example.com',
    'https://chat.example.com:443',
    'https://CHAT.example.com',
    'null',
    'https://chat.example.com/'
  ]
  for (const origin of refused) {
    const r = await handshakeStatus(wsUrl, { origin })
    t.equal(r.status, 403, origin)
    t.equal(JSON.parse(r.body ?? '{}').code, 'origin_not_allowed')
  }
  const missing = await handshakeStatus(wsUrl)
  t.equal(missing.status, 403)
  t.equal(JSON.parse(missing.body ?? '{}').code, 'origin_required')
  t.equal(await internalsOf(app.wsHub).cluster.limiter.ipCount('127.0.0.1'), 1, 'refusals took no slot')
  t.equal(app.wsHub.stats().handshakes.rejectedOrigin, refused.length + 1)
  ok.socket?.close()
})

t.test('allowMissingOrigin lets non-browser clients in', async (t) => {
  const { wsUrl } = await build(t, { allowedOrigins: ['https://chat.example.com'], allowMissingOrigin: true })
  t.equal((await handshakeStatus(wsUrl)).status, 101)
  t.equal((await handshakeStatus(wsUrl, { origin: 'https://evil.example' })).status, 403)
})

t.test('message rate limit: rate_limited, then 1008 for a client that keeps flooding', async (t) => {
  const { wsUrl, app } = await build(t, { messageRateLimit: { max: 5, intervalMs: 60_000 } })
  const flooder = await connect(wsUrl)
  const calm = await connect(wsUrl)
  for (let n = 0; n < 5; n++) flooder.send({ type: 'ping', id: n })
  for (let n = 0; n < 5; n++) t.equal((await flooder.next('pong')).id, n)
  flooder.send({ type: 'ping', id: 'over' })
  t.match(await flooder.next('error'), { code: 'rate_limited', id: 'over' }, 'the refusal carries the request id')
  for (let n = 0; n < 10; n++) flooder.send({ type: 'ping' })
  t.same(await flooder.closed, { code: 1008, reason: 'rate limit exceeded' })
  calm.send({ type: 'ping', id: 'c' })
  t.equal((await calm.next('pong')).id, 'c', 'other clients have their own budget')
  t.equal(app.wsHub.stats().floodCloses, 1)
})

t.test('message rate limit refills over time', async (t) => {
  const { wsUrl } = await build(t, { messageRateLimit: { max: 2, intervalMs: 100 } })
  const client = await connect(wsUrl)
  client.send({ type: 'ping', id: 1 })
  client.send({ type: 'ping', id: 2 })
  client.send({ type: 'ping', id: 3 })
  await client.next('error')
  await new Promise((resolve) => setTimeout(resolve, 150))
  client.send({ type: 'ping', id: 4 })
  t.equal((await client.next('pong')).id, 1)
  t.equal((await client.next('pong')).id, 2)
  t.equal((await client.next('pong')).id, 4)
})

t.test('handshake rate limit per IP: 429 once over, other IPs unaffected', async (t) => {
  const { wsUrl, app } = await build(t, { handshakeRateLimit: { max: 3, intervalMs: 60_000 } })
  for (let n = 0; n < 3; n++) {
    const r = await handshakeStatus(wsUrl)
    t.equal(r.status, 101)
    r.socket?.close()
  }
  const over = await handshakeStatus(wsUrl)
  t.equal(over.status, 429)
  t.equal(JSON.parse(over.body ?? '{}').code, 'handshake_rate')
  const other = await handshakeStatus(wsUrl, { localAddress: '127.0.0.2' })
  t.equal(other.status, 101)
  other.socket?.close()
  t.equal(app.wsHub.stats().handshakes.rejectedHandshakeRate, 1)
})

t.test('input limits: nesting depth, topics per connection, topic charset', async (t) => {
  const { wsUrl } = await build(t, { maxJsonDepth: 4, maxTopicsPerConnection: 2 })
  const c = await connect(wsUrl)
  c.send({ type: 'broadcast', message: { a: { b: 1 } }, id: 'ok' })
  t.equal((await c.next('ack')).id, 'ok')
  c.send({ type: 'broadcast', message: { a: { b: { c: { d: 1 } } } }, id: 'deep' })
  t.match(await c.next('error'), { code: 'invalid_message', id: 'deep', message: /deeper than 4/ })
  c.send('['.repeat(5000) + ']'.repeat(5000))
  t.match(await c.next('error'), { code: 'invalid_message' })
  for (const topic of ['a', 'b']) c.send({ type: 'subscribe', topic })
  c.send({ type: 'subscribe', topic: 'c', id: 'third' })
  t.match(await c.next('error'), { code: 'too_many_topics', id: 'third' })
  c.send({ type: 'subscribe', topic: 'a', id: 'again' })
  t.equal((await c.next('ack', 5000)).id !== undefined, true)
  for (const topic of ['<script>', 'a b', 'ünï', 'a\nb', 'x;y']) {
    c.send({ type: 'subscribe', topic })
    t.match(await c.next('error'), { code: 'invalid_message', message: /topic/ }, JSON.stringify(topic))
  }
})

t.test('__proto__ and constructor keys pollute nothing and arrive intact', async (t) => {
  const { wsUrl } = await build(t)
  const a = await connect(wsUrl)
  a.send('{"type":"broadcast","message":{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}},"__proto__":{"polluted":true}}')
  const got = await a.next('message')
  t.equal(({} as Record<string, unknown>).polluted, undefined)
  t.equal((Object.prototype as Record<string, unknown>).polluted, undefined)
  t.ok(Object.hasOwn(got.message as object, '__proto__'), 'the key is kept as data')
})

t.test('invalid UTF-8 closes with 1007', async (t) => {
  const { wsUrl } = await build(t)
  const a = await connect(wsUrl)
  const other = await connect(wsUrl)
  a.socket.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false })
  t.equal((await a.closed).code, 1007)
  other.send({ type: 'ping', id: 1 })
  t.equal((await other.next('pong')).id, 1)
})

t.test('rest.disable removes single routes', async (t) => {
  const { url } = await build(t, { rest: { disable: ['closeConnection', 'broadcast', 'closeUser'] } })
  t.equal((await fetch(`${url}/api/connections/x`, { method: 'DELETE' })).status, 404)
  t.equal((await fetch(`${url}/api/connections/broadcast`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"message":1}' })).status, 404)
  t.equal((await fetch(`${url}/api/users/x`, { method: 'DELETE' })).status, 404)
  t.equal((await fetch(`${url}/api/connections`)).status, 200, 'the others stay')
})

t.test('DELETE and send routes answer 401 before looking anything up, valid or not', async (t) => {
  const { url } = await build(t, { rest: { auth: () => false } })
  const calls: Array<[string, string, string?]> = [
    ['DELETE', '/api/connections/unknown'],
    ['DELETE', '/api/users/unknown'],
    ['POST', '/api/connections/unknown/send', '{"message":1}'],
    ['POST', '/api/connections/unknown/send', '{"message":null}'],
    ['POST', '/api/users/unknown/send', 'not json'],
    ['POST', '/api/topics/bad%20topic/publish', '{}']
  ]
  for (const [method, path, body] of calls) {
    const res = await fetch(`${url}${path}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body })
    t.equal(res.status, 401, `${method} ${path} ${body ?? ''}`)
  }
})
