/**
 * The Redis Streams source against a real Redis (REDIS_URL, default
 * redis://127.0.0.1:6379): the shared source suite, then what is its own
 * (dead letters, lag, entries a dead consumer left pending, reaping idle
 * consumers, an `ordered` source's lease moving on close and when lost).
 * Every stream is a fresh key, deleted at the end. Skipped when nothing
 * answers at REDIS_URL.
 */
import t, { type Test as Tap } from 'tap'
import { Redis } from 'ioredis'
import { normalizeSources, type RedisStreamSourceConfig } from '../lib/options/source-options.js'
import { MemoryLease } from '../lib/sources/leases/memory-lease.js'
import { RedisStreamSource, leaseKey } from '../lib/sources/redis-stream/redis-stream-source.js'
import { SourceRunner } from '../lib/sources/source-runner.js'
import type { SourceContext } from '../lib/sources/source.js'
import { FakePublisher, sourceSuite, uniqueName, quietLogger } from '../lib/testing/source-suite.js'
import { PrivateRedis, needsRedisServer, redisAnswers } from './helpers/redis-server.js'
import { record, range, sleep } from './helpers/source-records.js'
import { until } from './helpers.js'

const url = process.env.REDIS_URL !== undefined && process.env.REDIS_URL !== '' ? process.env.REDIS_URL : 'redis://127.0.0.1:6379'

const context = (instanceId: string, name = 'redis-stream'): SourceContext =>
  ({ instanceId, name, log: quietLogger, lease: (key) => new MemoryLease(key) })

function sourceConfig (streams: string[], extra: Record<string, unknown> = {}): RedisStreamSourceConfig {
  // A short BLOCK keeps reads responsive to what a test does next.
  const [config] = normalizeSources([{ type: 'redis-stream', url, streams, blockMs: 200, ...extra }])
  if (config?.type !== 'redis-stream') throw new Error('not a redis-stream source')
  return config
}

if (!await redisAnswers(url)) {
  t.plan(0, `nothing answers at ${url}`)
} else {
  const admin = new Redis(url, { maxRetriesPerRequest: 1 })
  /** Every key a test made, deleted when the file ends. */
  const made = new Set<string>()
  t.teardown(async () => {
    if (made.size > 0) await admin.del(...made)
    await admin.quit()
  })

  const newStream = (name = 'stream'): string => {
    const key = `ws-hub-test:${uniqueName(`source-${name}`)}`
    made.add(key)
    return key
  }

  async function produce (stream: string, texts: readonly string[]): Promise<void> {
    const pipeline = admin.pipeline()
    for (const text of texts) pipeline.xadd(stream, '*', 'payload', text)
    await pipeline.exec()
  }

  /** One field of XINFO GROUPS for the group. */
  async function groupField (stream: string, group: string, field: string): Promise<unknown> {
    for (const flat of await admin.call('XINFO', 'GROUPS', stream) as unknown[][]) {
      const info = new Map<unknown, unknown>()
      for (let i = 0; i + 1 < flat.length; i += 2) info.set(flat[i], flat[i + 1])
      if (info.get('name') === group) return info.get(field)
    }
    return undefined
  }

  /** A source and its runner, closed when the test ends. */
  async function run (t: Tap, config: RedisStreamSourceConfig, publisher: FakePublisher, instanceId = uniqueName('instance')): Promise<{ source: RedisStreamSource, runner: SourceRunner }> {
    const source = new RedisStreamSource(config, context(instanceId))
    const runner = new SourceRunner({ name: 'redis-stream', type: 'redis-stream', consumer: source, publisher, log: quietLogger, retryMs: 50, maxRetryMs: 200, lagIntervalMs: 200 })
    t.teardown(async () => { await runner.close() })
    await runner.start()
    return { source, runner }
  }

  await sourceSuite(t, 'redis-stream', {
    place: async () => newStream(),
    consumer: (place, { instanceId, group }) => new RedisStreamSource(sourceConfig([place], { group }), context(instanceId)),
    produce,
    timeoutMs: 10_000
  })

  t.test('redis-stream: a bad entry goes to the dead-letter stream with its fields, the reason and where it came from', async (t) => {
    const stream = newStream()
    const dead = newStream('dead')
    const publisher = new FakePublisher()
    const { runner } = await run(t, sourceConfig([stream], { from: 'earliest', deadLetter: { stream: dead } }), publisher)
    const poison = await admin.xadd(stream, '*', 'payload', '{not json', 'origin', 'billing')
    await produce(stream, [record(1)])
    await publisher.waitFor(1, 10_000)
    t.same(publisher.published.map((p) => p.n), [1], 'the good entry after it is published')
    const letters = await admin.xrange(dead, '-', '+')
    t.equal(letters.length, 1, 'one dead letter')
    t.same(letters[0]?.[1], [
      'payload', '{not json', 'origin', 'billing',
      'ws-hub-reason', 'invalid_json', 'ws-hub-source-stream', stream, 'ws-hub-source-id', poison
    ], 'its fields as read, then the reason and its place')
    const status = runner.status()
    t.equal(status.deadLettered, 1, 'counted as dead-lettered')
    t.equal(status.skipped.invalid_json, 0, 'not as skipped')
    await until(async () => (await admin.xpending(stream, 'ws-hub'))[0] === 0, 5_000, 'the poison entry to be acknowledged')
  })

  t.test('redis-stream: fields spelled out (topic, message, idempotencyKey) need no payload field', async (t) => {
    const stream = newStream()
    const publisher = new FakePublisher()
    await run(t, sourceConfig([stream], { from: 'earliest' }), publisher)
    await admin.xadd(stream, '*', 'topic', 'room', 'message', '{"n":7}', 'idempotencyKey', 'order-7')
    await admin.xadd(stream, '*', 'topic', 'room', 'message', '{"n":8}')
    const got = await publisher.waitFor(2, 10_000)
    t.same(got.map((p) => p.n), [7, 8])
    t.equal(got[0]?.key, 'order-7', 'the entry\'s own idempotency key')
    t.match(got[1]?.key, new RegExp(`^stream:${stream}:\\d+-\\d+$`), 'otherwise the entry\'s place')
  })

  t.test('redis-stream: lag counts entries not yet delivered to the group plus those pending', async (t) => {
    const stream = newStream()
    const group = 'lag-group'
    await admin.xgroup('CREATE', stream, group, '0', 'MKSTREAM')
    await produce(stream, range(0, 5).map((n) => record(n)))
    // Another consumer read two and never acknowledges them.
    await admin.xreadgroup('GROUP', group, 'other', 'COUNT', 2, 'STREAMS', stream, '>')
    const publisher = new FakePublisher()
    publisher.down = true
    const { source } = await run(t, sourceConfig([stream], { group }), publisher)
    t.equal(await source.lag(), 5, 'three undelivered and two pending; entries held by a paused source still count')
    await until(async () => (await admin.xpending(stream, group))[0] === 5, 5_000, 'the source to read the three')
    t.equal(await source.lag(), 5, 'read and held: pending now')
    publisher.down = false
    await publisher.waitFor(3, 10_000)
    await until(async () => await source.lag() === 2, 5_000, 'lag 2 once the three are acknowledged')
    t.same(publisher.firsts(), [2, 3, 4])
  })

  t.test('redis-stream: lag is null before the source started', async (t) => {
    const stream = newStream()
    const source = new RedisStreamSource(sourceConfig([stream]), context(uniqueName('instance')))
    t.equal(await source.lag(), null)
    await source.close()
  })

  t.test('redis-stream: close ends a long blocking read at once, and that read takes nothing with it', async (t) => {
    const stream = newStream()
    const instanceId = uniqueName('instance')
    const config = sourceConfig([stream], { blockMs: 30_000, from: 'earliest' })
    const first = new FakePublisher()
    const { source, runner } = await run(t, config, first, instanceId)
    await produce(stream, [record(0)])
    await first.waitFor(1, 10_000)
    // Blocked in XREADGROUP now, for up to 30 s.
    await sleep(100)
    const started = Date.now()
    await runner.close()
    t.ok(Date.now() - started < 1_000, `closed in ${Date.now() - started} ms, not after the BLOCK`)
    t.equal(source.active(), false, 'inactive once closed')
    await source.close()
    t.pass('a second close is a no-op')
    await produce(stream, range(1, 4).map((n) => record(n)))
    const pending = await admin.xpending(stream, 'ws-hub')
    t.equal(pending[0], 0, 'the cut read moved nothing into this consumer\'s pending list')
    const second = new FakePublisher()
    await run(t, config, second, instanceId)
    await second.waitFor(3, 10_000)
    t.same(second.firsts(), [1, 2, 3])
  })

  t.test('redis-stream: with a client of the user\'s, it reads on duplicates and never closes that client', async (t) => {
    const stream = newStream()
    const client = new Redis(url)
    t.teardown(async () => { await client.quit() })
    const [config] = normalizeSources([{ type: 'redis-stream', client, streams: [stream], blockMs: 200, from: 'earliest' }])
    if (config?.type !== 'redis-stream') throw new Error('not a redis-stream source')
    const publisher = new FakePublisher()
    const { runner } = await run(t, config, publisher)
    await produce(stream, [record(0)])
    await publisher.waitFor(1, 10_000)
    await runner.close()
    t.equal(client.status, 'ready', 'the user\'s client is still open')
    t.equal(await client.ping(), 'PONG')
  })

  t.test('redis-stream: down while Redis is, reads on by itself once it is back (a Redis restarted empty gets its group again)', { skip: needsRedisServer() }, async (t) => {
    const server = await PrivateRedis.start(t)
    const stream = 'restart-stream'
    const [config] = normalizeSources([{ type: 'redis-stream', url: server.url, streams: [stream], blockMs: 200, from: 'earliest' }])
    if (config?.type !== 'redis-stream') throw new Error('not a redis-stream source')
    const producer = new Redis(server.url, { maxRetriesPerRequest: 0, retryStrategy: () => 50 })
    producer.on('error', () => {})
    t.teardown(() => { producer.disconnect() })
    const publisher = new FakePublisher()
    const { runner } = await run(t, config, publisher)
    await producer.xadd(stream, '*', 'payload', record(0))
    await publisher.waitFor(1, 10_000)
    await server.stop()
    await until(() => runner.status().state === 'down', 5_000, 'the source to say it is down')
    await server.start()
    await until(() => producer.status === 'ready', 5_000, 'the producer to reconnect')
    await producer.xadd(stream, '*', 'payload', record(1))
    await publisher.waitFor(2, 15_000)
    t.same(publisher.firsts(), [0, 1], 'the entry added after the restart')
    t.equal(runner.status().state, 'up')
  })

  t.test('redis-stream: entries a dead consumer read and never acknowledged are claimed after claimIdleMs, and the dead consumer is deleted', async (t) => {
    const stream = newStream()
    const group = 'claim-group'
    await admin.xgroup('CREATE', stream, group, '0', 'MKSTREAM')
    await produce(stream, range(0, 3).map((n) => record(n)))
    await admin.xreadgroup('GROUP', group, 'dead-instance', 'COUNT', 10, 'STREAMS', stream, '>')
    const claimIdleMs = 300
    const publisher = new FakePublisher()
    const started = Date.now()
    await run(t, sourceConfig([stream], { group, claimIdleMs }), publisher)
    await produce(stream, [record(3)])
    await publisher.waitFor(4, 10_000)
    t.same(publisher.firsts(), [3, 0, 1, 2], 'the live entry at once, the dead consumer\'s after claimIdleMs')
    t.ok(Date.now() - started >= claimIdleMs, 'not before they were idle claimIdleMs')
    await until(async () => (await admin.xpending(stream, group))[0] === 0, 5_000, 'everything acknowledged')
    const consumers = async (): Promise<string[]> =>
      ((await admin.call('XINFO', 'CONSUMERS', stream, group)) as unknown[][]).map((flat) => String(flat[1]))
    await until(async () => !(await consumers()).includes('dead-instance'), 10 * claimIdleMs + 5_000, 'the dead consumer to be deleted')
    t.equal((await consumers()).length, 1, 'only the live one is left')
  })

  t.test('redis-stream ordered: one instance reads; when it closes the other takes over and reads its unacknowledged entries first', async (t) => {
    const stream = newStream()
    const group = `ordered-${uniqueName('g')}`
    made.add(leaseKey(group, [stream]))
    const config = sourceConfig([stream], { group, ordered: true, leaseMs: 600, from: 'earliest' })
    const a = new FakePublisher()
    const b = new FakePublisher()
    const first = await run(t, config, a, uniqueName('a'))
    await until(() => first.source.active(), 5_000, 'a to hold the lease')
    const second = await run(t, config, b, uniqueName('b'))
    t.equal(second.runner.status().active, false, 'b waits')
    await produce(stream, range(0, 5).map((n) => record(n)))
    await a.waitFor(5, 10_000)
    // a reads the next ones and holds them, unacknowledged, while its hub refuses.
    a.down = true
    await produce(stream, range(5, 10).map((n) => record(n)))
    await until(async () => (await admin.xpending(stream, group))[0] === 5, 5_000, 'a to read 5..9')
    t.equal(second.source.active(), false, 'b still waits')
    await first.runner.close()
    await until(() => second.source.active(), 5_000, 'b to take the lease once a released it')
    await produce(stream, range(10, 15).map((n) => record(n)))
    await b.waitFor(10, 10_000)
    t.same(b.firsts(), range(5, 15), 'in order: what a left pending, then the rest')
    t.same(a.firsts(), range(0, 5), 'a published only what it acknowledged')
  })

  t.test('redis-stream ordered: a holder whose lease is taken stops reading at once, and reads on once it holds it again', async (t) => {
    const stream = newStream()
    const group = `ordered-${uniqueName('g')}`
    const key = leaseKey(group, [stream])
    made.add(key)
    const leaseMs = 600
    const publisher = new FakePublisher()
    const { source } = await run(t, sourceConfig([stream], { group, ordered: true, leaseMs, from: 'earliest' }), publisher)
    await until(() => source.active(), 5_000, 'the source to hold the lease')
    // As if the lease had expired and another instance took it.
    await admin.set(key, 'another-instance', 'PX', 60_000)
    await until(() => !source.active(), leaseMs, 'the source to see the lease lost at its next renewal')
    await produce(stream, range(0, 5).map((n) => record(n)))
    await sleep(3 * 200)
    t.equal(await groupField(stream, group, 'lag'), 5, 'nothing read while another holds it')
    t.equal(publisher.published.length, 0, 'nothing published')
    await admin.del(key)
    await publisher.waitFor(5, 10_000)
    t.same(publisher.firsts(), range(0, 5), 'all of them, in order, once it holds the lease again')
  })
}
