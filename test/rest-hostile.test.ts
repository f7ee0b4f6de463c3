/**
 * Hostile REST input (issue 10, items 6 to 10): what property-based fuzzing
 * of the OpenAPI document found. Each test is named after the bug it pins.
 */
import t from 'tap'
import Fastify from 'fastify'
import websocket from '@fastify/websocket'
import swagger from '@fastify/swagger'
import { WebSocket } from 'ws'
import { build, connect, handshakeStatus, TestClient } from './helpers.js'
import wsHub, { InvalidArgumentError, type Authenticate } from '../lib/index.js'

const post = async (url: string, body: string) => fetch(url, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body
})

/** `[[[...]]]` nesting `levels` arrays. */
const nested = (levels: number): string => '['.repeat(levels) + ']'.repeat(levels)
const deepValue = (levels: number): unknown => JSON.parse(nested(levels))

// Tokens are the user id itself: these tests are about id lengths, not auth.
/** The parts of the generated OpenAPI document these tests read. */
interface Doc {
  paths: Record<string, Record<string, { parameters?: Array<{ name: string, required?: boolean }>, responses?: Record<string, unknown> }> | undefined>
}

/** The first message on an app's own WebSocket route (plain text, not hub frames). */
async function firstMessage (url: string): Promise<string> {
  const socket = new WebSocket(url)
  try {
    return await new Promise<string>((resolve, reject) => {
      socket.once('message', (data: Buffer) => resolve(data.toString()))
      socket.once('error', reject)
    })
  } finally {
    socket.close()
  }
}

const authenticate: Authenticate = async (request) => {
  const user = request.headers['x-user']
  return typeof user === 'string' ? { userId: user } : null
}

t.test('a push nesting 5,000 levels answered 500 with the stack overflow text; every push path now refuses what the socket refuses', async (t) => {
  const { url, wsUrl, app } = await build(t, {}, { logger: false })
  const client = await connect(wsUrl)
  const sender = await connect(wsUrl)
  client.send({ type: 'subscribe', topic: 'deep', id: 's' })
  await client.next('subscribed')
  await client.next('ack')

  // The socket side: a frame is refused when its message nests 32 levels
  // (the frame itself is one), and accepted at 31.
  sender.send(`{"type":"broadcast","id":"ok","message":${nested(31)}}`)
  await sender.next('ack')
  t.equal(JSON.stringify((await client.next('message')).message), nested(31))
  sender.send(`{"type":"broadcast","id":"deep","message":${nested(32)}}`)
  t.match(await sender.next('error'), { code: 'invalid_message', id: 'deep' })

  const routes = [
    `${url}/api/connections/broadcast`,
    `${url}/api/connections/${client.clientId}/send`,
    `${url}/api/topics/deep/publish`
  ]
  for (const route of routes) {
    for (const levels of [32, 4000, 5000, 100_000]) {
      const res = await post(route, `{"message":${nested(levels)}}`)
      const text = await res.text()
      t.equal(res.status, 400, `${levels} levels on ${route}`)
      t.match(JSON.parse(text), { statusCode: 400, code: 'invalid_message', message: /deeper than 32/ })
      t.notMatch(text, /call stack/)
    }
    const res = await post(route, `{"message":${nested(31)}}`)
    t.equal(res.status, 200, `31 levels on ${route} is accepted, as on the socket`)
  }
  // The sentinel's pong comes after anything sent before it.
  t.ok(await client.nothingBefore('error'))
  t.same(client.frames.map((f) => f.type), ['server-broadcast', 'direct', 'publish'], 'only the accepted pushes reached the client')

  const hub = app.wsHub
  const deep = deepValue(32)
  t.throws(() => hub.broadcast(deep), InvalidArgumentError)
  t.throws(() => hub.sendTo(client.clientId, deep), { code: 'WS_HUB_INVALID_ARGUMENT' })
  t.throws(() => hub.sendToUser('someone', deep), { code: 'WS_HUB_INVALID_ARGUMENT' })
  t.throws(() => hub.publish('deep', deepValue(5000)), { message: /deeper than 32/ })
  t.same(await hub.broadcast(deepValue(31)), { recipients: 2, remoteInstances: 0 }, 'the facade accepts what the socket accepts')
})

t.test('the depth limit follows maxJsonDepth on REST and on the facade', async (t) => {
  const { url, app } = await build(t, { maxJsonDepth: 4 })
  t.equal((await post(`${url}/api/connections/broadcast`, `{"message":${nested(3)}}`)).status, 200)
  t.equal((await post(`${url}/api/connections/broadcast`, `{"message":${nested(4)}}`)).status, 400)
  t.throws(() => app.wsHub.broadcast(deepValue(4)), InvalidArgumentError)
})

t.test('an unexpected failure behind a REST route no longer leaks its text in a 500', async (t) => {
  const { url, app } = await build(t)
  app.wsHub.broadcast = async () => { throw new Error('secret internal detail') }
  const res = await post(`${url}/api/connections/broadcast`, '{"message":1}')
  t.equal(res.status, 500)
  const body = await res.json() as Record<string, unknown>
  t.same(body, { statusCode: 500, error: 'Internal Server Error', code: 'internal_error', message: 'internal error' })
})

t.test('ids of 101 to 128 characters answered 414 from the router; 128 is routed, 129 is a 400 with a JSON body', async (t) => {
  const { url, wsUrl } = await build(t, { authenticate })
  const longUser = 'u'.repeat(128)
  const client = new TestClient(wsUrl, { headers: { 'x-user': longUser } })
  await client.ready()

  const send = await post(`${url}/api/users/${longUser}/send`, '{"message":"hi"}')
  t.equal(send.status, 200)
  t.same(await send.json(), { recipients: 1, remoteInstances: 0 })
  t.match(await client.next('direct'), { from: 'server', user: longUser, message: 'hi' })

  for (const length of [101, 128]) {
    const id = 'x'.repeat(length)
    for (const [method, path] of [['GET', `/api/connections/${id}`], ['DELETE', `/api/connections/${id}`], ['DELETE', `/api/users/${id}`]] as const) {
      const res = await fetch(`${url}${path}`, { method })
      t.equal(res.status, 404, `${method} with a ${length}-character id is routed`)
      t.match(await res.json(), { statusCode: 404, code: /^unknown_(client|user)$/ })
    }
    const res = await post(`${url}/api/connections/${id}/send`, '{"message":1}')
    t.equal(res.status, 404)
    t.match(await res.json(), { code: 'unknown_client' })
  }

  const tooLong = 'x'.repeat(129)
  for (const [method, path] of [
    ['GET', `/api/connections/${tooLong}`], ['DELETE', `/api/connections/${tooLong}`], ['POST', `/api/connections/${tooLong}/send`],
    ['POST', `/api/users/${tooLong}/send`], ['DELETE', `/api/users/${tooLong}`]
  ] as const) {
    const res = method === 'POST' ? await post(`${url}${path}`, '{"message":1}') : await fetch(`${url}${path}`, { method })
    t.equal(res.status, 400, `${method} ${path.slice(0, 20)}... with 129 characters`)
    t.match(await res.json(), { statusCode: 400, code: 'FST_ERR_VALIDATION', message: /128 characters/ })
  }
  t.equal((await fetch(`${url}/api/connections/${'x'.repeat(128)}/other`, { method: 'POST' })).status, 404, 'an unknown sub-route of a long id stays unknown')

  const logout = await fetch(`${url}/api/users/${longUser}`, { method: 'DELETE' })
  t.equal(logout.status, 204)
  t.same(await client.closed, { code: 4000, reason: 'closed by server' })
})

t.test('a body with __proto__ or constructor.prototype keys answered 400 "not valid JSON"; it is plain data, as on the socket', async (t) => {
  const { url, wsUrl } = await build(t)
  const client = await connect(wsUrl)
  const hostile = '{"__proto__":{"polluted":"top"},"message":{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"keep":1}}'
  const res = await post(`${url}/api/connections/broadcast`, hostile)
  t.equal(res.status, 200)
  t.same(await res.json(), { recipients: 1, remoteInstances: 0 })
  const frame = await client.next('server-broadcast')
  const message = frame.message as Record<string, unknown>
  t.ok(Object.hasOwn(message, '__proto__'), 'the client gets __proto__ as an own key')
  t.same(JSON.parse(JSON.stringify(message)), JSON.parse('{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"keep":1}'))
  t.equal((Object.prototype as Record<string, unknown>).polluted, undefined, 'no prototype was touched')
  t.equal(({} as Record<string, unknown>).polluted, undefined)

  const bad = await post(`${url}/api/connections/broadcast`, '{"message":')
  t.equal(bad.status, 400)
  t.match(await bad.json(), { code: 'FST_ERR_CTP_INVALID_JSON_BODY' })
  const empty = await post(`${url}/api/connections/broadcast`, '')
  t.equal(empty.status, 400)
  t.match(await empty.json(), { code: 'FST_ERR_CTP_EMPTY_JSON_BODY' })
})

t.test('the app\'s own routes keep Fastify\'s poisoning check: the REST parser is scoped to the hub', async (t) => {
  const { url } = await build(t, {}, {}, (app) => {
    app.post('/mine', async (request) => request.body)
  })
  const res = await post(`${url}/mine`, '{"__proto__":{"x":1}}')
  t.equal(res.status, 400)
})

t.test('a WebSocket upgrade on a route that is not a WebSocket route answered 101 and closed 1005; it is refused before the upgrade', async (t) => {
  const { wsUrl, port, url, app } = await build(t, {}, {}, (app) => {
    app.get('/hello', async () => ({ hello: 'world' }))
    app.get('/app-ws', { websocket: true }, (socket) => { socket.send('app route') })
  })
  const base = `ws://127.0.0.1:${port}`
  for (const path of ['/api/health', '/api/stats', '/hello']) {
    const r = await handshakeStatus(`${base}${path}`)
    t.equal(r.status, 400, `upgrade on ${path}`)
    t.same(JSON.parse(r.body ?? '{}'), { statusCode: 400, error: 'Bad Request', code: 'not_a_websocket_route', message: 'this route does not accept WebSocket connections' })
  }
  t.equal((await fetch(`${url}/api/health`)).status, 200, 'plain HTTP is unchanged')
  t.same(await (await fetch(`${url}/hello`)).json(), { hello: 'world' })
  t.equal(app.wsHub.stats().handshakes.accepted, 0, 'no refused upgrade counts as accepted')

  const hub = await connect(wsUrl)
  t.ok(hub.clientId, 'the hub route still upgrades')
  t.equal(await firstMessage(`${base}/app-ws`), 'app route', 'an app WebSocket route registered after the hub still upgrades')
})

t.test('an app that registered @fastify/websocket itself keeps its WebSocket routes, before and after the hub', async (t) => {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await app.register(websocket, { options: { maxPayload: 64 * 1024 } })
  app.get('/before', { websocket: true }, (socket) => { socket.send('before') })
  await app.register(wsHub, { rest: { auth: false }, heartbeatIntervalMs: 0 })
  app.route({ method: 'GET', url: '/after', wsHandler: (socket) => { socket.send('after') }, handler: async () => 'http' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  const base = `ws://127.0.0.1:${address.port}`
  for (const path of ['/before', '/after']) t.equal(await firstMessage(`${base}${path}`), path.slice(1))
  t.equal((await handshakeStatus(`${base}/api/health`)).status, 400)
  t.ok((await connect(`${base}/ws`)).clientId)
})

t.test('the OpenAPI document marked limit and offset required and left out 413 and 415; it describes what the server does', async (t) => {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await app.register(swagger, { openapi: { openapi: '3.0.3', info: { title: 'hub', version: '1' } } })
  await app.register(wsHub, { rest: { auth: false }, heartbeatIntervalMs: 0 })
  await app.ready()
  const doc = app.swagger() as unknown as Doc
  const parameters = doc.paths['/api/connections']?.get?.parameters ?? []
  for (const name of ['limit', 'offset']) {
    const parameter = parameters.find((p) => p.name === name)
    t.ok(parameter, name)
    t.notOk(parameter?.required, `${name} has a default, so it is optional`)
  }
  const pushRoutes = ['/api/connections/broadcast', '/api/connections/{id}/send', '/api/topics/{topic}/publish', '/api/users/{userId}/send']
  for (const path of pushRoutes) {
    const responses = doc.paths[path]?.post?.responses ?? {}
    for (const status of ['200', '400', '413', '415']) t.ok(responses[status], `${path} documents ${status}`)
  }
  t.notOk(Object.keys(doc.paths).some((path) => path.includes('*')), 'the long-id routes are not in the document')

  // What the document says is what the server answers.
  const res = await app.inject({ method: 'POST', url: '/api/connections/broadcast', headers: { 'content-type': 'application/xml' }, payload: '<x/>' })
  t.equal(res.statusCode, 415)
  const big = await app.inject({ method: 'POST', url: '/api/connections/broadcast', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ message: 'x'.repeat(2 * 1024 * 1024) }) })
  t.equal(big.statusCode, 413)
  t.match(big.json(), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' })
  const page = await app.inject({ method: 'GET', url: '/api/connections' })
  t.equal(page.statusCode, 200, 'limit and offset may be left out')
})
