import t from 'tap'
import Fastify from 'fastify'
import { WebSocket } from 'ws'
import wsHub from '../lib/index.js'
import { build, connect, TestClient, until } from './helpers.js'
import { internalsOf } from '../lib/internals.js'

t.test('a slow consumer is cut off with 4008 and the others keep receiving', async (t) => {
  const { wsUrl, app } = await build(t, { maxBufferedBytes: 64 * 1024 })
  const slow = await connect(wsUrl)
  const fast = await connect(wsUrl)
  slow.socket.pause()
  const payload = 'x'.repeat(16 * 1024)
  let fastGot = 0
  fast.socket.on('message', () => { fastGot++ })
  // Broadcast until the paused client's unsent bytes pass the limit; the
  // kernel buffers absorb the first few hundred KiB.
  for (let n = 0; n < 2000 && internalsOf(app.wsHub).connections.get(slow.clientId) !== undefined; n++) {
    await app.wsHub.broadcast(payload)
    if (n % 20 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  t.equal(internalsOf(app.wsHub).connections.get(slow.clientId), undefined, 'the slow client was unregistered')
  t.equal(app.wsHub.stats().slowConsumerCloses, 1)
  t.ok(internalsOf(app.wsHub).connections.get(fast.clientId), 'the fast client is still registered')
  await app.wsHub.broadcast('after')
  await until(() => fast.frames.some((f) => f.message === 'after') || fastGot > 0)
  slow.socket.resume()
  const closed = await slow.closed
  t.equal(closed.code, 4008)
  t.equal(closed.reason, 'slow consumer')
})

t.test('heartbeat terminates a client that stops answering pings', async (t) => {
  // Counted, not timed: each tick pings every live socket, so a client's
  // ping count is the number of ticks it lived through. The interval stays
  // well above an event-loop stall on a busy machine, which would otherwise
  // make a healthy pong miss its tick.
  const { wsUrl, app } = await build(t, { heartbeatInterval: 200 })
  const healthy = await connect(wsUrl)
  let pings = 0
  healthy.socket.on('ping', () => { pings++ })
  const mute = new TestClient(wsUrl, { autoPong: false })
  await mute.ready()
  const closed = await mute.closed
  t.equal(closed.code, 1006, 'terminated, not closed politely')
  t.equal(internalsOf(app.wsHub).connections.get(mute.clientId), undefined)
  t.ok(app.wsHub.stats().heartbeatTerminations >= 1)
  await until(() => pings >= 4, 10_000, 'four pings to the healthy client')
  t.ok(internalsOf(app.wsHub).connections.get(healthy.clientId), 'a client that pongs survives several intervals')
  t.equal(healthy.socket.readyState, WebSocket.OPEN)
})

t.test('heartbeatInterval 0 disables pings', async (t) => {
  const { wsUrl, app } = await build(t, { heartbeatInterval: 0 })
  const mute = new TestClient(wsUrl, { autoPong: false })
  await mute.ready()
  let pinged = false
  mute.socket.on('ping', () => { pinged = true })
  // A hub with pings on is the clock: by its third ping, the first hub
  // would have pinged (and cut) the mute client too, however busy the machine.
  const reference = await build(t, { heartbeatInterval: 20 })
  const witness = await connect(reference.wsUrl)
  let witnessed = 0
  witness.socket.on('ping', () => { witnessed++ })
  await until(() => witnessed >= 3, 10_000, 'three pings from the reference hub')
  t.equal(pinged, false)
  t.ok(internalsOf(app.wsHub).connections.get(mute.clientId))
  t.ok(await mute.nothingBefore('error'), 'and it is still served')
})

t.test('fastify.close() sends 1001 to every client and does not hang', async (t) => {
  const app = Fastify()
  await app.register(wsHub, { heartbeatInterval: 0, rest: { auth: false } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  const url = `ws://127.0.0.1:${address.port}/ws`
  const clients = await Promise.all(Array.from({ length: 5 }, async () => connect(url)))
  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 2000, 'closed promptly')
  for (const client of clients) {
    const closed = await client.closed
    t.equal(closed.code, 1001)
    t.equal(closed.reason, 'server shutting down')
  }
})

t.test('a client that never answers the close is terminated after closeTimeout', async (t) => {
  const app = Fastify()
  await app.register(wsHub, { heartbeatInterval: 0, closeTimeout: 200, rest: { auth: false } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  const client = await connect(`ws://127.0.0.1:${address.port}/ws`)
  // A paused client never reads the close frame, so never answers it.
  client.socket.pause()
  const started = Date.now()
  await app.close()
  const took = Date.now() - started
  t.ok(took >= 150 && took < 2000, `waited about closeTimeout (${took} ms)`)
  client.socket.resume()
  await client.closed
})

t.test('a message over maxPayload closes the socket with 1009', async (t) => {
  const { wsUrl, app } = await build(t, { maxPayload: 1024 })
  const client = await connect(wsUrl)
  const other = await connect(wsUrl)
  client.send({ type: 'broadcast', message: 'x'.repeat(2000) })
  const closed = await client.closed
  t.equal(closed.code, 1009)
  await until(() => internalsOf(app.wsHub).connections.get(client.clientId) === undefined)
  other.send({ type: 'ping', id: 1 })
  t.equal((await other.next('pong')).id, 1, 'others unaffected')
})

t.test('maxPayload default accepts 64 KiB and refuses more', async (t) => {
  const { wsUrl } = await build(t)
  const client = await connect(wsUrl)
  client.send({ type: 'ping', id: 'big', pad: 'y'.repeat(60 * 1024) })
  t.equal((await client.next('pong')).id, 'big', '60 KiB is accepted')
  client.send({ type: 'ping', pad: 'y'.repeat(65 * 1024) })
  t.equal((await client.closed).code, 1009)
})

t.test('a dead socket found during a send is cleaned up', async (t) => {
  const { wsUrl, app } = await build(t)
  const client = await connect(wsUrl)
  const connection = internalsOf(app.wsHub).connections.get(client.clientId)
  if (connection === undefined) throw new Error('not registered')
  // Simulate a socket that died without its close event reaching us yet.
  Object.defineProperty(connection.socket, 'readyState', { value: WebSocket.CLOSED })
  const report = await app.wsHub.broadcast('hello')
  t.equal(report.recipients, 0)
  t.equal(internalsOf(app.wsHub).connections.get(client.clientId), undefined)
  t.equal(app.wsHub.stats().deadSocketsRemoved, 1)
  client.socket.terminate()
})

t.test('shutdown finishes when the registry fails, and leaves a user-passed broker open', async (t) => {
  const { MemoryLimiter } = await import('../lib/cluster/memory/memory-limiter.js')
  const { MemoryDirectory } = await import('../lib/cluster/memory/memory-directory.js')
  const directory = new MemoryDirectory()
  directory.leave = async () => { throw new Error('registry down') }
  const broker = {
    start: async () => {},
    publish: async () => {},
    subscribe: async () => {},
    unsubscribe: async () => {},
    state: () => 'down' as const,
    closed: false,
    async close () { this.closed = true }
  }
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'error', stream: { write: (l: string) => { lines.push(l) } } } })
  await app.register(wsHub, { heartbeatIntervalMs: 0, rest: { auth: false }, broker: { type: 'custom', transport: broker }, registry: { type: 'custom', limiter: new MemoryLimiter(), directory } })
  await app.ready()
  await app.close()
  t.ok(lines.some((l) => l.includes('registry leave failed')))
  t.equal(broker.closed, false, 'what the user passed in is not closed')
})

// Regression: with prepared frames, a tick's writes stay corked (counted in
// bufferedAmount) until the tick ends; a burst must not read as a slow client.
t.test('a reading client survives a one-tick burst larger than maxBufferedBytes', async (t) => {
  const { wsUrl, app } = await build(t, { maxBufferedBytes: 64 * 1024 })
  const client = await connect(wsUrl)
  const payload = 'y'.repeat(16 * 1024)
  // broadcast writes synchronously before its first await: all 20 in one tick.
  const sends = Array.from({ length: 20 }, async () => app.wsHub.broadcast(payload))
  t.ok(internalsOf(app.wsHub).connections.get(client.clientId), 'still registered after 320 KiB in one tick')
  await Promise.all(sends)
  for (let n = 0; n < 20; n++) await client.next('server-broadcast')
  t.equal(app.wsHub.stats().slowConsumerCloses, 0)
})
