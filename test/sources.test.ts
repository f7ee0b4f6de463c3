import t from 'tap'
import Fastify from 'fastify'
import Type from 'typebox'
import wsHub, { MemoryBus, MemoryTransport, type SourceConsumer, type Transport, type WsHubOptions } from '../lib/index.js'
import { MemoryHistory } from '../lib/cluster/memory/memory-history.js'
import { build, connect, until, type TestClient } from './helpers.js'
import { QueueConsumer } from './fakes/queue-consumer.js'

const topics = {
  namespaces: {
    room: {},
    feed: { history: { size: 100, ttlMs: 60_000 } },
    price: { schema: Type.Object({ price: Type.Number() }) }
  }
}

async function subscribe (client: TestClient, topic: string): Promise<void> {
  client.send({ type: 'subscribe', topic, id: 's' })
  await client.next('subscribed')
  await client.next('ack')
}

const text = (value: unknown): string => JSON.stringify(value)

t.test('records from a source reach topic subscribers, users, clients and everyone', async (t) => {
  const consumer = new QueueConsumer()
  const { app, wsUrl } = await build(t, {
    topics,
    authenticate: (request) => ({ userId: String(request.headers['x-user'] ?? 'anon') }),
    sources: [{ type: 'custom', consumer }]
  })
  const alice = await connect(wsUrl, { headers: { 'x-user': 'alice' } })
  const bob = await connect(wsUrl, { headers: { 'x-user': 'bob' } })
  t.teardown(() => { alice.close(); bob.close() })
  await subscribe(alice, 'room:1')
  consumer.push(
    text({ topic: 'room:1', message: { n: 1 } }),
    text({ userId: 'bob', message: { n: 2 } }),
    text({ clientId: alice.clientId, message: { n: 3 } }),
    text({ broadcast: true, message: { n: 4 } }),
    text([{ topic: 'room:1', message: { n: 5 } }, { userId: 'bob', message: { n: 6 } }])
  )
  t.same((await alice.next('publish')).message, { n: 1 })
  t.match(await bob.next('direct'), { type: 'direct', from: 'server', user: 'bob', message: { n: 2 } })
  t.same((await alice.next('direct')).message, { n: 3 })
  t.same((await alice.next('server-broadcast')).message, { n: 4 })
  t.same((await bob.next('server-broadcast')).message, { n: 4 })
  t.same((await alice.next('publish')).message, { n: 5 })
  t.same((await bob.next('direct')).message, { n: 6 })
  await until(() => consumer.acked.length === 5)
  const [status] = app.wsHub.stats().sources
  t.match(status, { name: 'custom', type: 'custom', state: 'up', active: true, recordsIn: 5, published: 5, deadLettered: 0 })
})

t.test('bad records are skipped and counted by reason; the records after them flow', async (t) => {
  const consumer = new QueueConsumer()
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (l: string) => { lines.push(l) } } } })
  await app.register(wsHub, {
    rest: { auth: false },
    heartbeatIntervalMs: 0,
    topics,
    sources: [{
      type: 'custom',
      name: 'queue',
      consumer,
      map: (raw) => {
        const { text: value } = raw as { text: string }
        if (value === 'throw') throw new Error('cannot map this one')
        if (value === 'skip') return null
        return JSON.parse(value) as never
      }
    }]
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const address = app.server.address() as { port: number }
  const client = await connect(`ws://127.0.0.1:${address.port}/ws`)
  t.teardown(() => client.close())
  await subscribe(client, 'price:x')
  consumer.push(
    '{"topic":"price:x","message":{"price":"secret-payload"}}',
    'throw',
    '{oops secret-payload',
    text({ topic: 'nowhere:1', message: {} }),
    text({ topic: 'price:x' }),
    'skip',
    text({ topic: 'price:x', message: { price: 2 } })
  )
  t.same((await client.next('publish')).message, { price: 2 }, 'only the good record went out')
  await until(() => consumer.acked.length === 7)
  const [status] = app.wsHub.stats().sources
  t.same(status?.skipped, { invalid_json: 1, map_failed: 1, invalid_target: 1, unknown_topic: 1, invalid_message: 1 })
  t.equal(status?.filtered, 1)
  t.equal(status?.published, 1)
  t.equal(status?.recordsIn, 7)
  const logged = lines.filter((l) => l.includes('skipped a bad record'))
  t.equal(logged.length, 1, 'logged once per interval')
  t.match(logged[0], /"coordinates":\{"queue":"q","offset":0\}/)
  t.notOk(lines.some((l) => l.includes('secret-payload')), 'never the payload')
  const metrics = await app.inject('/metrics')
  t.match(metrics.body, /ws_hub_source_records_total\{source="queue",outcome="skipped_invalid_json"\} 1/)
  t.match(metrics.body, /ws_hub_source_state\{source="queue",state="up"\} 1/)
  t.match(metrics.body, /ws_hub_source_lag\{source="queue"\} 0/)
})

t.test('a dead-letter destination gets bad records; while it fails, the source holds them', async (t) => {
  const consumer = new QueueConsumer()
  consumer.withDeadLetter = true
  consumer.deadLetterFails = 2
  const { app } = await build(t, { topics, sources: [{ type: 'custom', consumer }] })
  consumer.push('{bad', text({ topic: 'room:1', message: 1 }))
  await until(() => consumer.acked.length === 2, 10_000)
  t.equal(consumer.deadLettered.length, 1)
  t.equal(consumer.deadLettered[0]?.reason, 'invalid_json')
  const [status] = app.wsHub.stats().sources
  t.equal(status?.deadLettered, 1)
  t.equal(status?.skipped.invalid_json, 0, 'dead-lettered, not skipped')
})

/** A transport that can be taken down: publishes fail and state says so. */
class Switchable implements Transport {
  down = false
  readonly inner: MemoryTransport
  constructor (bus: MemoryBus) { this.inner = new MemoryTransport(bus) }
  start: Transport['start'] = async (id, handler) => { await this.inner.start(id, handler) }
  publish: Transport['publish'] = async (envelope, to) => {
    if (this.down) throw new Error('transport down')
    await this.inner.publish(envelope, to)
  }

  subscribe = async (topic: string): Promise<void> => { await this.inner.subscribe(topic) }
  unsubscribe = async (topic: string): Promise<void> => { await this.inner.unsubscribe(topic) }
  state = (): 'up' | 'down' => this.down ? 'down' : this.inner.state()
  close = async (): Promise<void> => { await this.inner.close() }
}

t.test('while the transport is down the source pauses, loses nothing, and resumes by itself', async (t) => {
  const bus = new MemoryBus()
  const transport = new Switchable(bus)
  const consumer = new QueueConsumer()
  const { app } = await build(t, { topics, broker: { type: 'custom', transport }, sources: [{ type: 'custom', consumer }] })
  const other = await build(t, { topics, broker: { type: 'memory', bus } })
  const client = await connect(other.wsUrl)
  t.teardown(() => client.close())
  await subscribe(client, 'room:1')
  transport.down = true
  consumer.push(...[1, 2, 3].map((n) => text({ topic: 'room:1', message: n })))
  await until(() => app.wsHub.stats().sources[0]?.state === 'paused')
  t.equal(consumer.acked.length, 0, 'nothing acknowledged while paused')
  const health = await app.inject('/api/health')
  t.same(health.json().sources, [{ name: 'custom', type: 'custom', state: 'paused' }])
  transport.down = false
  for (const n of [1, 2, 3]) t.equal((await client.next('publish', 10_000)).message, n, 'in order, on the other instance')
  await until(() => consumer.acked.length === 3)
  t.equal(app.wsHub.stats().sources[0]?.state, 'up')
})

t.test('a redelivered record into a history topic is not published twice (its key comes from its coordinates)', async (t) => {
  const bus = new MemoryBus()
  const store = new MemoryHistory()
  t.teardown(() => store.close())
  const consumer = new QueueConsumer()
  const common = (): WsHubOptions => ({ topics, history: { type: 'custom', history: store } })
  await build(t, { ...common(), broker: { type: 'memory', bus }, sources: [{ type: 'custom', consumer }] })
  const other = await build(t, { ...common(), broker: { type: 'memory', bus } })
  const client = await connect(other.wsUrl)
  t.teardown(() => client.close())
  await subscribe(client, 'feed:1')
  // The same record twice, as a backend redelivers after a crash: same key.
  const record = text({ topic: 'feed:1', message: 'once' })
  consumer.push(record)
  const first = await client.next('publish')
  t.equal(first.message, 'once')
  await until(() => consumer.acked.length === 1)
  // Read again, as a backend redelivers after a crash: the same coordinates and key.
  const again = consumer.acked[0]
  if (again === undefined) throw new Error('no record acknowledged')
  consumer.pushRecord(again)
  consumer.push(text({ topic: 'feed:1', message: 'next' }))
  t.equal((await client.next('publish')).message, 'next', 'the redelivery was not published again')
})

t.test('sources start after ready, stop before the sockets close, and options are checked', async (t) => {
  const consumer = new QueueConsumer()
  const app = Fastify()
  await app.register(wsHub, { rest: { auth: false }, heartbeatIntervalMs: 0, sources: [{ type: 'custom', consumer }] })
  t.equal(app.wsHub.stats().sources[0]?.state, 'down', 'not started while registering')
  await app.ready()
  await until(() => app.wsHub.stats().sources[0]?.state === 'up')
  await app.close()
  t.ok(consumer.closed, 'closed with the hub')

  const register = async (options: WsHubOptions): Promise<unknown> => {
    const other = Fastify()
    try {
      await other.register(wsHub, { rest: { auth: false }, ...options })
      await other.ready()
    } finally {
      await other.close()
    }
    return null
  }
  await t.rejects(register({ sources: [{ type: 'custom', name: 'a', consumer }, { type: 'custom', name: 'a', consumer }] }), { code: 'WS_HUB_INVALID_OPTION', message: /two sources are named "a"/ })
  await t.rejects(register({ sources: [{ type: 'nats' } as never] }), { code: 'WS_HUB_INVALID_OPTION', message: /sources\[0\]\.type" must be one of kafka, mqtt, redis-stream, postgres-outbox, custom/ })
  await t.rejects(register({ sources: [{ type: 'kafka', brokers: [], topics: ['x'] }] }), { code: 'WS_HUB_INVALID_OPTION', message: /sources\[0\]\.brokers/ })
  await t.rejects(register({ sources: [{ type: 'redis-stream', streams: ['s'] }] }), { code: 'WS_HUB_INVALID_OPTION', message: /exactly one of url and client/ })
  await t.rejects(register({ sources: [{ type: 'postgres-outbox', connectionString: 'postgres://x', table: 'bad name' }] }), { code: 'WS_HUB_INVALID_OPTION', message: /sources\[0\]\.table/ })
})

t.test('every source option has its default, filled in by register', async (t) => {
  const { normalizeOptions } = await import('../lib/options/hub-options.js')
  const { SOURCE_DEFAULTS } = await import('../lib/options/source-options.js')
  t.same(SOURCE_DEFAULTS, {
    kafka: { groupId: 'ws-hub-source', clientId: 'fastify-ws-hub-source', from: 'latest', sessionTimeoutMs: 30_000, heartbeatIntervalMs: 3_000 },
    mqtt: { group: 'ws-hub', qos: 1, sessionExpirySec: 0, reconnectMs: 1_000, ordered: false },
    redisStream: { group: 'ws-hub', from: 'latest', count: 100, blockMs: 1_000, claimIdleMs: 30_000, ordered: false, leaseMs: 10_000 },
    postgresOutbox: { table: 'ws_outbox', batchSize: 100, pollIntervalMs: 1_000, onDelivered: 'delete', ordered: false }
  })
  const consumer = new QueueConsumer()
  const options = normalizeOptions({
    sources: [
      { type: 'kafka', brokers: ['k:9092'], topics: ['a'] },
      { type: 'kafka', brokers: ['k:9092'], topics: ['b'] },
      { type: 'mqtt', url: 'mqtt://m', subscriptions: ['x/#'] },
      { type: 'redis-stream', url: 'redis://r', streams: ['s'] },
      { type: 'postgres-outbox', connectionString: 'postgres://p/db' },
      { type: 'custom', consumer }
    ]
  })
  t.same(options.sources.map((s) => s.name), ['kafka', 'kafka-2', 'mqtt', 'redis-stream', 'postgres-outbox', 'custom'], 'named by type, numbered from the second')
  t.match(options.sources[0], { ...SOURCE_DEFAULTS.kafka, brokers: ['k:9092'], topics: ['a'] })
  t.match(options.sources[4], SOURCE_DEFAULTS.postgresOutbox)
  t.equal((options.sources[5] as { consumer: unknown }).consumer, consumer, 'a custom consumer is kept by reference')
  t.same(normalizeOptions({}).sources, [], 'no sources by default')
  t.throws(() => normalizeOptions({ sources: [{ type: 'kafka', brokers: ['k'], topics: ['t'], sessionTimeoutMs: 6_000, heartbeatIntervalMs: 6_000 }] }), { code: 'WS_HUB_INVALID_OPTION' })
  t.throws(() => normalizeOptions({ sources: [{ type: 'mqtt', url: 'mqtt://m', subscriptions: ['x'], qos: 0 as never }] }), { code: 'WS_HUB_INVALID_OPTION', message: /sources\[0\]\.qos/ })
  t.throws(() => normalizeOptions({ sources: 'kafka' as never }), { code: 'WS_HUB_INVALID_OPTION', message: /"sources" must be an array/ })
})

t.test('a source that cannot reach its service is down, and readiness says degraded', async (t) => {
  const unreachable: SourceConsumer = {
    start: async (sink) => { sink.connected(false, new Error('connection refused')) },
    lag: async () => null,
    close: async () => {}
  }
  const { app } = await build(t, { sources: [{ type: 'custom', name: 'feed', consumer: unreachable }] })
  const health = (await app.inject('/api/health')).json() as { status: string, sources: unknown[] }
  t.equal(health.status, 'degraded')
  t.same(health.sources, [{ name: 'feed', type: 'custom', state: 'down' }])
  t.match((await app.inject('/metrics')).body, /ws_hub_source_state\{source="feed",state="down"\} 1/)
  t.match((await app.inject('/metrics')).body, /ws_hub_source_lag\{source="feed"\} -1/)
})
