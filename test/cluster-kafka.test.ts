/**
 * Three hub instances over a real Kafka (one of them in its own process),
 * with the Redis registry for lookups and limits; then Kafka stopped and
 * restarted under two hubs.
 */
import t from 'tap'
import { Redis } from 'ioredis'
import { build, connect, until } from './helpers.js'
import { deleteKeysUnder, redisUrl, uniquePrefix } from './helpers/redis-server.js'
import { kafkaBrokers, PrivateKafka } from './helpers/kafka-server.js'
import { HubProcess } from './helpers/cluster.js'
import type { Authenticate, WsHubOptions } from '../lib/index.js'

const brokers = kafkaBrokers(t)
const redis = brokers === null ? null : redisUrl(t)

const authenticate: Authenticate = (request) => {
  const user = request.headers['x-user']
  return typeof user === 'string' ? { userId: user } : null
}

function kafkaOptions (kafka: string[], redisUrl: string, name: string, extra: WsHubOptions = {}): WsHubOptions {
  return {
    broker: { type: 'kafka', brokers: kafka, topic: `ws-hub-test-${name}` },
    registry: { type: 'redis', url: redisUrl, keyPrefix: `ws-hub-test:${name}:` },
    ...extra
  }
}

async function health (base: string): Promise<string> {
  return ((await (await fetch(`${base}/api/health`)).json()) as { status: string }).status
}

if (brokers === null) {
  t.test('kafka cluster tests', { skip: 'KAFKA_BROKERS is not set; run `bash scripts/kafka.sh start` and export what it prints' }, async () => {})
} else if (redis !== null) {
  t.test('three instances over Kafka, one in its own process: broadcast, direct, user and topic', async (t) => {
    const name = uniquePrefix('kafka').replace(/[^A-Za-z0-9-]/g, '-')
    t.teardown(async () => {
      const client = new Redis(redis)
      await deleteKeysUnder(client, `ws-hub-test:${name}:`)
      await client.quit()
    })
    const [a, b, c] = await Promise.all([
      build(t, kafkaOptions(brokers, redis, name, { authenticate })),
      build(t, kafkaOptions(brokers, redis, name, { authenticate })),
      HubProcess.start(t, kafkaOptions(brokers, redis, name), 60_000)
    ])
    const alice = await connect(a.wsUrl, { headers: { 'x-user': 'alice' } })
    const aliceOnB = await connect(b.wsUrl, { headers: { 'x-user': 'alice' } })
    const carol = await connect(c.wsUrl)

    alice.send({ type: 'broadcast', message: 'to all three' })
    for (const client of [alice, aliceOnB, carol]) t.equal((await client.next('message', 10_000)).message, 'to all three')

    carol.send({ type: 'direct', target: alice.clientId, message: 'from the other process', id: 1 })
    t.match(await alice.next('direct', 10_000), { from: carol.clientId, message: 'from the other process' })
    t.equal((await carol.next('ack', 10_000)).id, 1)
    // Sentinels take the same road as what must not arrive: a frame from the
    // same sender over Kafka, whose one partition (the default) keeps order.
    const marker = (text: string) => (f: Record<string, unknown>): boolean => f.type === 'direct' && f.message === text
    t.ok(await aliceOnB.nothingBefore('direct', () => carol.send({ type: 'direct', target: aliceOnB.clientId, message: 'sentinel 1' }), marker('sentinel 1')), 'only the target')

    carol.send({ type: 'direct', user: 'alice', message: 'every alice', id: 2 })
    t.match(await alice.next('direct', 10_000), { user: 'alice', message: 'every alice' })
    t.match(await aliceOnB.next('direct', 10_000), { user: 'alice', message: 'every alice' })

    aliceOnB.send({ type: 'subscribe', topic: 'prices', id: 3 })
    await aliceOnB.next('ack')
    const res = await fetch(`${c.url}/api/topics/prices/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"message":{"p":7}}' })
    t.same(await res.json(), { recipients: 0, remoteInstances: 2 }, 'handed to the two other instances')
    t.match(await aliceOnB.next('publish', 10_000), { topic: 'prices', message: { p: 7 } })
    t.ok(await alice.nothingBefore('publish', async () => {
      await fetch(`${c.url}/api/connections/${alice.clientId}/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"message":"sentinel 2"}' })
    }, marker('sentinel 2')), 'not subscribed, nothing')
    t.ok(await carol.nothingBefore('message', () => alice.send({ type: 'direct', target: carol.clientId, message: 'sentinel 3' }), marker('sentinel 3')), 'nothing duplicated')
  })

  t.test('Kafka stopped and restarted under two hubs: local service continues, health degrades, delivery resumes without duplicates', async (t) => {
    const kafka = await PrivateKafka.start(t)
    const name = uniquePrefix('kafka-fault').replace(/[^A-Za-z0-9-]/g, '-')
    const options: WsHubOptions = { broker: { type: 'kafka', brokers: kafka.brokers, topic: `ws-hub-test-${name}`, publishTimeoutMs: 1500 } }
    const a = await build(t, options)
    const b = await build(t, options)
    const onA = await connect(a.wsUrl)
    const onA2 = await connect(a.wsUrl)
    const onB = await connect(b.wsUrl)
    onA.send({ type: 'broadcast', message: 'before' })
    t.equal((await onB.next('message', 10_000)).message, 'before')
    await onA2.next('message')

    await kafka.pause()
    await until(async () => (await health(a.url)) === 'degraded', 20_000, 'health to degrade')
    t.same(await (await fetch(`${a.url}/api/health/live`)).json(), { status: 'ok' })
    onA.send({ type: 'broadcast', message: 'during', id: 'd' })
    t.equal((await onA2.next('message')).message, 'during', 'local delivery continues')
    t.equal((await onA.next('ack', 10_000)).id, 'd', 'the sender is acked once the publish settles')

    await kafka.resume()
    await until(async () => (await health(a.url)) === 'ok' && (await health(b.url)) === 'ok', 60_000, 'both hubs to recover')
    onA.send({ type: 'broadcast', message: 'after' })
    t.equal((await onB.next('message', 15_000)).message, 'after', 'cross-instance delivery resumed by itself')
    await new Promise((resolve) => setTimeout(resolve, 500))
    t.same(onB.frames.filter((f) => f.type === 'message').map((f) => f.message), [], 'nothing late, nothing twice')
  })
}
