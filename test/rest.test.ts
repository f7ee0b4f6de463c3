import t from 'tap'
import { build, connect, until } from './helpers.js'
import { internalsOf } from '../lib/internals.js'

t.test('GET /api/connections lists with paging', async (t) => {
  const { url, wsUrl } = await build(t)
  const clients = await Promise.all(Array.from({ length: 5 }, async () => connect(wsUrl)))
  const res = await fetch(`${url}/api/connections?limit=2&offset=1`)
  t.equal(res.status, 200)
  const body = await res.json() as { count: number, connections: Array<Record<string, unknown>> }
  t.equal(body.count, 5)
  t.equal(body.connections.length, 2)
  const first = body.connections[0]
  t.ok(first)
  t.same(Object.keys(first ?? {}).sort(), ['connectedAt', 'id', 'instanceId', 'ip', 'topics', 'userId'])
  t.equal(first?.ip, '127.0.0.1')
  t.equal(first?.userId, null)
  t.ok(clients.some((c) => c.clientId === first?.id))
  t.equal((await fetch(`${url}/api/connections?limit=0`)).status, 400)
  t.equal((await fetch(`${url}/api/connections?limit=5000`)).status, 400)
  t.equal((await fetch(`${url}/api/connections?offset=-1`)).status, 400)
  const all = await (await fetch(`${url}/api/connections`)).json() as { connections: unknown[] }
  t.equal(all.connections.length, 5, 'default page holds them all')
})

t.test('GET /api/connections/:id', async (t) => {
  const { url, wsUrl } = await build(t)
  const a = await connect(wsUrl)
  a.send({ type: 'subscribe', topic: 'news', id: 1 })
  await a.next('ack')
  const res = await fetch(`${url}/api/connections/${a.clientId}`)
  t.equal(res.status, 200)
  t.match(await res.json(), { id: a.clientId, topics: ['news'], ip: '127.0.0.1' })
  const missing = await fetch(`${url}/api/connections/nope`)
  t.equal(missing.status, 404)
  t.match(await missing.json(), { statusCode: 404, code: 'unknown_client' })
})

t.test('DELETE /api/connections/:id closes with 4000', async (t) => {
  const { url, wsUrl, app } = await build(t)
  const a = await connect(wsUrl)
  const res = await fetch(`${url}/api/connections/${a.clientId}`, { method: 'DELETE' })
  t.equal(res.status, 204)
  t.same(await a.closed, { code: 4000, reason: 'closed by server' })
  await until(() => internalsOf(app.wsHub).connections.count === 0)
  t.equal((await fetch(`${url}/api/connections/${a.clientId}`, { method: 'DELETE' })).status, 404)
})

const post = async (url: string, body: unknown) => fetch(url, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: typeof body === 'string' ? body : JSON.stringify(body)
})

t.test('POST /api/connections/broadcast', async (t) => {
  const { url, wsUrl } = await build(t)
  const [a, b] = await Promise.all([connect(wsUrl), connect(wsUrl)])
  const res = await post(`${url}/api/connections/broadcast`, { message: { alert: 'hi' } })
  t.equal(res.status, 200)
  t.same(await res.json(), { recipients: 2, remoteInstances: 0 })
  for (const c of [a, b]) t.same((await c.next('server-broadcast')).message, { alert: 'hi' })
  for (const bad of [{}, { message: null }, { message: '' }]) {
    const r = await post(`${url}/api/connections/broadcast`, bad)
    t.equal(r.status, 400, `${JSON.stringify(bad)} -> 400`)
    t.match(await r.json(), { statusCode: 400, error: 'Bad Request', message: /message/ })
  }
  const notJson = await post(`${url}/api/connections/broadcast`, '{oops')
  t.equal(notJson.status, 400)
  for (const ok of [0, false, 'x', [], {}]) {
    t.equal((await post(`${url}/api/connections/broadcast`, { message: ok })).status, 200, `${JSON.stringify(ok)} is a message`)
  }
})

t.test('POST /api/connections/:id/send', async (t) => {
  const { url, wsUrl } = await build(t)
  const [a, b] = await Promise.all([connect(wsUrl), connect(wsUrl)])
  const res = await post(`${url}/api/connections/${a.clientId}/send`, { message: 'just you' })
  t.equal(res.status, 200)
  t.same(await res.json(), { recipients: 1, remoteInstances: 0 })
  t.match(await a.next('direct'), { from: 'server', message: 'just you' })
  t.ok(await b.nothingBefore('direct'))
  t.equal((await post(`${url}/api/connections/ghost/send`, { message: 'x' })).status, 404)
  t.equal((await post(`${url}/api/connections/${a.clientId}/send`, { message: '' })).status, 400)
})

t.test('POST /api/topics/:topic/publish', async (t) => {
  const { url, wsUrl } = await build(t)
  const [a, b] = await Promise.all([connect(wsUrl), connect(wsUrl)])
  a.send({ type: 'subscribe', topic: 'prices', id: 1 })
  await a.next('ack')
  const res = await post(`${url}/api/topics/prices/publish`, { message: { p: 1 } })
  t.same(await res.json(), { recipients: 1, remoteInstances: 0 })
  t.match(await a.next('publish'), { topic: 'prices', from: 'server', message: { p: 1 } })
  t.ok(await b.nothingBefore('publish'))
  t.same(await (await post(`${url}/api/topics/empty/publish`, { message: 1 })).json(), { recipients: 0, remoteInstances: 0 })
  t.equal((await post(`${url}/api/topics/has%20space/publish`, { message: 1 })).status, 400)
  t.equal((await post(`${url}/api/topics/${'x'.repeat(100)}/publish`, { message: 1 })).status, 200, 'the longest topic fits a path')
  const long = await post(`${url}/api/topics/${'x'.repeat(101)}/publish`, { message: 1 })
  t.equal(long.status, 414, 'longer than any topic: Fastify refuses the path')
  t.match(await long.json(), { statusCode: 414 })
})

t.test('rest.auth: false -> 401 on every route, true -> through', async (t) => {
  let allow = false
  const { url, wsUrl } = await build(t, { rest: { auth: async (request) => allow && request.headers['x-api-key'] === 'k' } })
  const a = await connect(wsUrl)
  const routes: Array<[string, string, unknown?]> = [
    ['GET', '/api/connections'],
    ['GET', `/api/connections/${a.clientId}`],
    ['GET', '/api/stats'],
    ['POST', '/api/connections/broadcast', { message: 1 }],
    ['POST', `/api/connections/${a.clientId}/send`, { message: 1 }],
    ['POST', '/api/topics/t/publish', { message: 1 }],
    ['DELETE', `/api/connections/${a.clientId}`]
  ]
  for (const [method, path, body] of routes) {
    const res = await fetch(`${url}${path}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
    t.equal(res.status, 401, `${method} ${path}`)
    t.same(await res.json(), { statusCode: 401, error: 'Unauthorized', code: 'unauthorized', message: 'missing or invalid credentials' })
  }
  t.equal(a.socket.readyState, 1, 'the DELETE did not close anything')
  allow = true
  t.equal((await fetch(`${url}/api/connections`, { headers: { 'x-api-key': 'k' } })).status, 200)
  t.equal((await fetch(`${url}/api/connections`, { headers: { 'x-api-key': 'wrong' } })).status, 401)
  t.equal((await fetch(`${url}/api/health`)).status, 200, 'probes need no credentials')
})

t.test('a rest.auth that throws denies', async (t) => {
  const { url } = await build(t, { rest: { auth: () => { throw new Error('boom') } } })
  t.equal((await fetch(`${url}/api/connections`)).status, 401)
})

t.test('without rest.auth the plugin warns that the push API is open', async (t) => {
  const lines: string[] = []
  const stream = { write: (line: string) => { lines.push(line) } }
  await build(t, {}, { logger: { level: 'warn', stream } })
  t.ok(lines.some((l) => l.includes('open to anyone')), 'warned at startup')
})

t.test('with rest.auth there is no such warning', async (t) => {
  const lines: string[] = []
  const stream = { write: (line: string) => { lines.push(line) } }
  await build(t, { rest: { auth: () => true } }, { logger: { level: 'warn', stream } })
  t.notOk(lines.some((l) => l.includes('open to anyone')))
})

t.test('rest.prefix moves the routes; rest: false removes them', async (t) => {
  const moved = await build(t, { rest: { prefix: '/push' } })
  t.equal((await fetch(`${moved.url}/push/connections`)).status, 200)
  t.equal((await fetch(`${moved.url}/api/connections`)).status, 404)
  const off = await build(t, { rest: false })
  t.equal((await fetch(`${off.url}/api/connections`)).status, 404)
  t.equal((await fetch(`${off.url}/api/health`)).status, 404)
})

t.test('health and stats', async (t) => {
  const { url, wsUrl, app } = await build(t)
  const a = await connect(wsUrl)
  a.send({ type: 'broadcast', message: 1 })
  await a.next('message')
  t.same(await (await fetch(`${url}/api/health`)).json(), { status: 'ok', instanceId: app.wsHub.instanceId, broker: 'none', registry: 'up', connections: 1, sources: [] })
  t.same(await (await fetch(`${url}/api/health/live`)).json(), { status: 'ok' })
  const stats = await (await fetch(`${url}/api/stats`)).json() as Record<string, unknown>
  t.match(stats, { connections: 1, messagesIn: 1, handshakes: { accepted: 1 }, brokerState: 'none' })
  t.ok(Number(stats.messagesOut) >= 2, 'welcome and the broadcast')
})
