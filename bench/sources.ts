import { performance } from 'node:perf_hooks'
import Fastify, { type FastifyInstance } from 'fastify'
import { WebSocket } from 'ws'
import { Redis } from 'ioredis'
import { Kafka, logLevel } from 'kafkajs'
import mqtt from 'mqtt'
import pg from 'pg'
import wsHub, { outboxDdl, type SourceOption } from 'fastify-ws-hub'

/*
 * End-to-end latency of each event source: from the moment a record is
 * produced into Kafka, published over MQTT, added to a Redis stream or
 * committed into a PostgreSQL outbox, until a WebSocket client of the hub
 * has it. One hub (memory transport, so only the source path is measured)
 * reads one source; one client is subscribed to the topic. The producer
 * runs in this process and stamps each record with its send time
 * (performance.timeOrigin + now, sub-millisecond); the client, also here,
 * subtracts. Each rate runs for RUN_MS, produced in batches every 10 ms
 * on the clock (up to 50 batches awaiting their acknowledgement).
 * A service that does not answer is skipped and said so. Run:
 * `npm run bench:sources` (REDIS_URL, KAFKA_BROKERS, MQTT_URL, DATABASE_URL).
 */

const REDIS = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const KAFKA = (process.env.KAFKA_BROKERS ?? '').split(',').filter((b) => b !== '')
const MQTT = process.env.MQTT_URL ?? 'mqtt://127.0.0.1:1883'
const DATABASE = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const RATES = (process.env.BENCH_RATES ?? '1000,10000').split(',').map(Number)
const RUN_MS = Number(process.env.BENCH_RUN_MS ?? 3000)
const TICK_MS = 10
const MAX_IN_FLIGHT = 50
const TOPIC = 'bench:feed'
const ID = `bench_src_${process.pid}_${Date.now().toString(36)}`

interface Place {
  source: SourceOption
  /** Sends these payload texts; resolves once the service took them. */
  produce: (texts: string[]) => Promise<void>
  close: () => Promise<void>
}

const now = (): number => performance.timeOrigin + performance.now()
const payload = (seq: number): string => JSON.stringify({ topic: TOPIC, message: { seq, at: now() } })

const places: Record<string, () => Promise<Place | string>> = {
  async kafka () {
    if (KAFKA.length === 0) return 'KAFKA_BROKERS is not set'
    const kafka = new Kafka({ brokers: KAFKA, clientId: 'bench-sources', logLevel: logLevel.NOTHING })
    const admin = kafka.admin()
    await admin.connect()
    await admin.createTopics({ topics: [{ topic: ID, numPartitions: 1 }], waitForLeaders: true })
    const producer = kafka.producer()
    await producer.connect()
    return {
      source: { type: 'kafka', brokers: KAFKA, topics: [ID], groupId: ID },
      async produce (texts) { await producer.send({ topic: ID, acks: 1, messages: texts.map((value) => ({ value })) }) },
      async close () { await producer.disconnect(); await admin.deleteTopics({ topics: [ID] }).catch(() => {}); await admin.disconnect() }
    }
  },
  async mqtt () {
    const client = await mqtt.connectAsync(MQTT, { protocolVersion: 5, connectTimeout: 2_000, reconnectPeriod: 0 }).catch(() => null)
    if (client === null) return `no MQTT broker at ${MQTT}`
    return {
      source: { type: 'mqtt', url: MQTT, subscriptions: [`${ID}/#`], group: ID },
      async produce (texts) { await Promise.all(texts.map(async (text) => await client.publishAsync(`${ID}/feed`, text, { qos: 1 }))) },
      async close () { await client.endAsync() }
    }
  },
  async 'redis-stream' () {
    const redis = new Redis(REDIS, { lazyConnect: true, maxRetriesPerRequest: 1 })
    try { await redis.connect() } catch { return `no Redis at ${REDIS}` }
    return {
      source: { type: 'redis-stream', url: REDIS, streams: [ID], group: ID },
      async produce (texts) {
        const pipeline = redis.pipeline()
        for (const text of texts) pipeline.xadd(ID, '*', 'payload', text)
        await pipeline.exec()
      },
      async close () { await redis.del(ID); redis.disconnect() }
    }
  },
  async 'postgres-outbox' () {
    // A few connections, so batches in flight commit side by side, as an app's requests do.
    const client = new pg.Pool({ connectionString: DATABASE, max: 4 })
    try { await client.query(outboxDdl(ID)) } catch { await client.end(); return `no PostgreSQL at ${DATABASE}` }
    return {
      source: { type: 'postgres-outbox', connectionString: DATABASE, table: ID },
      async produce (texts) {
        // One transaction per batch, as an app commits its rows; the trigger's NOTIFY goes at commit.
        const params = texts.map((text) => JSON.stringify((JSON.parse(text) as { message: unknown }).message))
        const values = params.map((_, i) => `($1, $${i + 2}::jsonb)`).join(', ')
        await client.query(`INSERT INTO ${ID} (topic, message) VALUES ${values}`, [TOPIC, ...params])
      },
      async close () { await client.query(`DROP TABLE IF EXISTS ${ID} CASCADE`); await client.end() }
    }
  }
}

function percentile (sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil(p / 100 * sorted.length) - 1)] ?? NaN
}

async function hubFor (source: SourceOption): Promise<{ app: FastifyInstance, port: number }> {
  const app = Fastify({ logger: { level: 'error' } })
  await app.register(wsHub, { rest: { auth: false }, heartbeatIntervalMs: 0, messageRateLimit: false, sources: [source] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, port: (app.server.address() as { port: number }).port }
}

interface Received { seq: number, latency: number }

async function subscriber (port: number, received: Received[]): Promise<WebSocket> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`)
  await new Promise<void>((resolve, reject) => { socket.once('message', () => resolve()); socket.once('error', reject) })
  await new Promise<void>((resolve) => {
    socket.on('message', (data: Buffer) => {
      const frame = JSON.parse(data.toString()) as { type: string, message?: { seq: number, at: number } }
      if (frame.type === 'subscribed') resolve()
      if (frame.type === 'publish' && frame.message !== undefined) received.push({ seq: frame.message.seq, latency: now() - frame.message.at })
    })
    socket.send(JSON.stringify({ type: 'subscribe', topic: TOPIC }))
  })
  return socket
}

async function measure (name: string, place: Place): Promise<void> {
  const { app, port } = await hubFor(place.source)
  const received: Received[] = []
  const socket = await subscriber(port, received)
  try {
    // Warm up: records until one arrives (a Kafka group join takes seconds).
    const deadline = Date.now() + 60_000
    let seq = -1
    while (received.length === 0) {
      if (Date.now() > deadline) throw new Error(`${name}: nothing arrived within 60 s`)
      await place.produce([payload(seq--)])
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    for (const rate of RATES) {
      received.length = 0
      const perTick = Math.max(1, Math.round(rate * TICK_MS / 1000))
      const started = now()
      let produced = 0
      let ticks = 0
      let lagging = 0
      // Batches leave on the clock, not after the previous one was
      // acknowledged, so a slow acknowledgement does not slow the rate; at
      // most MAX_IN_FLIGHT batches wait for theirs.
      const inFlight = new Set<Promise<void>>()
      while (now() - started < RUN_MS) {
        const due = Math.floor((now() - started) / TICK_MS)
        while (ticks <= due) {
          if (inFlight.size >= MAX_IN_FLIGHT) {
            lagging++
            await Promise.race(inFlight)
          }
          const sent = place.produce(Array.from({ length: perTick }, () => payload(produced++)))
          inFlight.add(sent)
          sent.finally(() => inFlight.delete(sent)).catch(() => {})
          ticks++
        }
        await new Promise((resolve) => setTimeout(resolve, 1))
      }
      await Promise.all(inFlight)
      const elapsed = (now() - started) / 1000
      const drain = Date.now() + 15_000
      while (received.length < produced && Date.now() < drain) await new Promise((resolve) => setTimeout(resolve, 50))
      const latencies = received.map((r) => r.latency).sort((a, b) => a - b)
      const distinct = new Set(received.map((r) => r.seq)).size
      console.log([
        name.padEnd(16),
        `${String(rate).padStart(6)}/s asked`,
        `${(produced / elapsed).toFixed(0).padStart(6)}/s produced`,
        `${distinct}/${produced} delivered`,
        `p50 ${percentile(latencies, 50).toFixed(1)} ms`,
        `p99 ${percentile(latencies, 99).toFixed(1)} ms`,
        `max ${(latencies.at(-1) ?? NaN).toFixed(1)} ms`,
        lagging > 0 ? `(producer held back ${lagging} times by ${MAX_IN_FLIGHT} batches in flight)` : ''
      ].join('  '))
    }
  } finally {
    socket.close()
    await app.close()
  }
}

console.log(`event sources, end to end (produce -> WebSocket client), ${RUN_MS} ms per rate, batches every ${TICK_MS} ms, one hub on a memory transport`)
for (const [name, open] of Object.entries(places)) {
  const place = await open()
  if (typeof place === 'string') {
    console.log(`${name.padEnd(16)}  skipped: ${place}`)
    continue
  }
  try {
    await measure(name, place)
  } catch (err) {
    console.log(`${name.padEnd(16)}  failed: ${(err as Error).message}`)
  } finally {
    await place.close()
  }
}
process.exit(0)
