/**
 * The demo price feed's one producer: one tick per symbol per second into
 * the Kafka topic the example's source reads (config.ts). Run one, however
 * many app instances there are: each tick is read by one instance and
 * published to the subscribers of all.
 *
 *   npm run build && npm run build:example
 *   KAFKA_BROKERS=localhost:29092 npm run example:prices
 *
 * It reads KAFKA_BROKERS, and PRICE_FEED_TOPIC to produce elsewhere than
 * `ws-hub-prices`. With `--healthcheck` it answers instead whether it
 * produced lately: exit 0 when a tick went out in the last few seconds.
 */
import { readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Kafka, logLevel, Partitioners, type Producer } from 'kafkajs'
import { readPriceFeedConfig, type PriceFeedConfig } from './config.js'
import { TICK_INTERVAL_MS, ticksAt } from './prices.js'

/**
 * Partitions of a topic this script creates: ticks are keyed by symbol, so
 * each symbol's ticks stay in order, and up to three app instances share
 * the reading.
 */
const PARTITIONS = 3
/** Past this, a stuck shutdown exits instead of waiting for SIGKILL. */
const CLOSE_GRACE_MS = 10_000
/** When the last tick went out, for `--healthcheck` (the process has no port to probe). */
const ALIVE_FILE = join(tmpdir(), 'ws-hub-price-feed.alive')
const STALE_MS = 5 * TICK_INTERVAL_MS

function log (message: string): void {
  console.log(`price-feed: ${message}`)
}

/** Creates the topic if missing; one that exists is left as its owner made it. */
async function ensureTopic (kafka: Kafka, topic: string): Promise<void> {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const created = await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true })
    if (created) log(`created topic ${topic} with ${PARTITIONS} partitions`)
  } finally {
    await admin.disconnect()
  }
}

async function produce (producer: Producer, topic: string, seconds: number): Promise<void> {
  await producer.send({
    topic,
    messages: ticksAt(seconds).map((tick) => ({ key: tick.symbol, value: JSON.stringify(tick) }))
  })
}

async function run (feed: PriceFeedConfig): Promise<void> {
  const kafka = new Kafka({ clientId: 'ws-hub-example-price-feed', brokers: feed.brokers, logLevel: logLevel.WARN })
  await ensureTopic(kafka, feed.topic)
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false })
  await producer.connect()
  log(`producing to ${feed.topic} on ${feed.brokers.join(',')} every ${TICK_INTERVAL_MS} ms`)

  // Logged when producing starts failing and when it recovers, not on every tick.
  let failing = false
  // A tick still being sent (Kafka slow or away) makes the next one wait
  // its turn: one send at a time, and shutdown waits for it.
  let sending: Promise<void> | null = null
  const tick = async (): Promise<void> => {
    try {
      await produce(producer, feed.topic, Math.floor(Date.now() / 1000))
      await writeFile(ALIVE_FILE, String(Date.now()))
      if (failing) log('producing again')
      failing = false
    } catch (err) {
      if (!failing) console.error(`price-feed: producing failed; retrying every tick: ${String(err)}`)
      failing = true
    }
  }
  const timer = setInterval(() => {
    sending ??= tick().finally(() => { sending = null })
  }, TICK_INTERVAL_MS)

  // `once`: a second Ctrl+C falls back to Node's default and ends the process.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping`)
      clearInterval(timer)
      setTimeout(() => {
        console.error(`price-feed: not stopped after ${CLOSE_GRACE_MS} ms; exiting`)
        process.exit(1)
      }, CLOSE_GRACE_MS).unref()
      Promise.resolve(sending)
        .then(async () => { await producer.disconnect() })
        .then(async () => { await rm(ALIVE_FILE, { force: true }) })
        .then(() => { log('stopped') }, (err: unknown) => {
          console.error(`price-feed: stopping failed: ${String(err)}`)
          process.exitCode = 1
        })
    })
  }
}

/** The container's probe: did a tick go out in the last STALE_MS? */
async function producedLately (): Promise<boolean> {
  const at = Number(await readFile(ALIVE_FILE, 'utf8').catch(() => ''))
  return Number.isFinite(at) && Date.now() - at < STALE_MS
}

if (process.argv.includes('--healthcheck')) {
  process.exitCode = await producedLately() ? 0 : 1
} else {
  try {
    await run(readPriceFeedConfig(process.env))
  } catch (err) {
    // Kafka unreachable past kafkajs' retries, or a bad environment: exit,
    // and let whoever runs the feed (compose's restart policy) start it again.
    console.error(`price-feed: could not start: ${String(err)}`)
    process.exit(1)
  }
}
