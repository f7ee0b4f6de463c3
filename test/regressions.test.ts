/** Bugs found in review, each pinned by a test named after it. */
import t from 'tap'
import Fastify from 'fastify'
import { Writable } from 'node:stream'
import wsHub, { MemoryBus, OptionsError, type Transport, type WsHubOptions } from '../lib/index.js'
import { MemoryDirectory } from '../lib/cluster/memory/memory-directory.js'
import { MemoryLimiter } from '../lib/cluster/memory/memory-limiter.js'
import { build, connect, handshakeStatus } from './helpers.js'

function logLines (): { stream: Writable, lines: string[] } {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _enc, done) { lines.push(...chunk.toString().split('\n').filter(Boolean)); done() } })
  return { stream, lines }
}

/** Two hubs that share one in-process cluster: a bus between them and one limiter and directory. */
async function pair (t: Parameters<typeof build>[0], options: WsHubOptions = {}): Promise<[Awaited<ReturnType<typeof build>>, Awaited<ReturnType<typeof build>>]> {
  const bus = new MemoryBus()
  const limiter = new MemoryLimiter()
  const directory = new MemoryDirectory()
  const shared: WsHubOptions = { ...options, broker: { type: 'memory', bus }, registry: { type: 'custom', limiter, directory } }
  return [await build(t, shared), await build(t, shared)]
}

t.test('regression: fastify.close() resolves after a failed start (sweeper used before it was declared)', async (t) => {
  const failing: Transport = {
    start: async () => { throw new Error('broker unreachable') },
    publish: async () => {},
    subscribe: async () => {},
    unsubscribe: async () => {},
    state: () => 'down',
    close: async () => {}
  }
  const app = Fastify({ logger: false })
  app.register(wsHub, { rest: { auth: false }, broker: { type: 'custom', transport: failing } })
  await t.rejects(async () => await app.ready(), { message: 'broker unreachable' })
  await t.resolves(app.close(), 'close after a failed start resolves')
})

t.test('regression: GET /api/connections/:id answers for a client held by another instance', async (t) => {
  const [a, b] = await pair(t)
  const client = await connect(b.wsUrl)
  t.teardown(() => client.close())
  client.send({ type: 'subscribe', topic: 'news', id: 1 })
  await client.next('ack')
  const list = await (await fetch(`${a.url}/api/connections`)).json() as { connections: Array<{ id: string }> }
  t.ok(list.connections.some((c) => c.id === client.clientId), 'a lists the client held by b')
  const res = await fetch(`${a.url}/api/connections/${client.clientId}`)
  t.equal(res.status, 200)
  const info = await res.json() as { id: string, instanceId: string, topics: string[] }
  t.equal(info.id, client.clientId)
  t.equal(info.instanceId, b.app.wsHub.instanceId)
  t.same(info.topics, ['news'], 'topics come from the instance holding the socket')
  t.equal((await fetch(`${a.url}/api/connections/nobody`)).status, 404)
})

t.test('regression: maxConnectionsPerUser is counted across instances, not per instance', async (t) => {
  const authenticate = (): { userId: string } => ({ userId: 'alice' })
  const [a, b] = await pair(t, { authenticate, maxConnectionsPerUser: 2 })
  const first = await connect(a.wsUrl)
  const second = await connect(b.wsUrl)
  t.teardown(() => { first.close(); second.close() })
  const third = await handshakeStatus(b.wsUrl)
  t.equal(third.status, 429, 'the third connection of alice is refused on either instance')
  t.match(third.body, /user_limit/)
  first.close()
  await first.closed
  // The released user slot is free again, cluster-wide.
  let status = 0
  for (let attempt = 0; attempt < 100 && status !== 101; attempt++) {
    const result = await handshakeStatus(a.wsUrl)
    status = result.status
    result.socket?.close()
    if (status !== 101) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(status, 101, 'a slot freed on one instance can be used on another')
})

t.test('regression: the push API is not open unless rest.auth is chosen', async (t) => {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  app.register(wsHub, {})
  const err = await app.ready().then(() => null, (e: unknown) => e)
  t.ok(err instanceof OptionsError, 'register fails with an OptionsError')
  t.match(String((err as Error).message), /rest\.auth.*rest: \{ auth: false \}/)
  t.notOk(String((err as Error).message).includes('\n'), 'one line')

  const { stream, lines } = logLines()
  const open = Fastify({ logger: { level: 'warn', stream } })
  t.teardown(() => open.close())
  await open.register(wsHub, { rest: { auth: false }, heartbeatIntervalMs: 0 })
  await open.ready()
  t.ok(lines.some((l) => l.includes('open to anyone')), 'running it open on purpose still warns')
})

t.test('regression: a directory outage does not log one error per connect and disconnect', async (t) => {
  const directory = new MemoryDirectory()
  directory.add = async () => { throw new Error('Redis down') }
  directory.remove = async () => { throw new Error('Redis down') }
  const { stream, lines } = logLines()
  const { wsUrl } = await build(t, { registry: { type: 'custom', limiter: new MemoryLimiter(), directory } }, { logger: { level: 'error', stream } })
  for (let n = 0; n < 10; n++) {
    const client = await connect(wsUrl)
    client.close()
    await client.closed
  }
  const errors = lines.filter((l) => l.includes('directory update failed'))
  t.equal(errors.length, 1, 'one line, then a summary at most every 10 s')
})
