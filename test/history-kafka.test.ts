/**
 * Issue 12's faults over the Kafka transport, history in Redis: a
 * subscriber terminated mid-stream comes back on another instance with
 * every publication once, in order, and a Kafka frozen for five seconds
 * (SIGSTOP) loses envelopes that receivers fill from history. A private
 * broker of this file's own (scripts/kafka.sh, needs java); the shared
 * KAFKA_BROKERS is never touched. Gated like the other Kafka tests:
 * skipped without KAFKA_BROKERS, except under CI where that fails.
 */
import t from 'tap'
import { Redis } from 'ioredis'
import { HubProcess } from './helpers/cluster.js'
import { PrivateKafka } from './helpers/kafka-server.js'
import { deleteKeysUnder, redisUrl, uniquePrefix } from './helpers/redis-server.js'
import { historyOptions, lostSubscriber, transportOutage } from './helpers/history-scenarios.js'

const url = redisUrl(t)

if ((process.env.KAFKA_BROKERS ?? '').trim() === '') {
  if (process.env.CI === 'true') t.fail('KAFKA_BROKERS is not set: CI must run the Kafka tests (bash scripts/kafka.sh start prints it)')
  else t.test('history over Kafka', { skip: 'KAFKA_BROKERS is not set (this file starts its own broker, with scripts/kafka.sh as the other Kafka tests do); run `bash scripts/kafka.sh start` and export the KAFKA_BROKERS it prints' }, async () => {})
} else if (url !== null) {
  t.test('history over Kafka', async (t) => {
    const kafka = await PrivateKafka.start(t)
    const hubs = async (t: Parameters<typeof HubProcess.start>[0], name: string): Promise<HubProcess[]> => {
      const prefix = uniquePrefix(name)
      t.teardown(async () => {
        const admin = new Redis(url)
        await deleteKeysUnder(admin, prefix)
        await admin.quit()
      })
      const options = historyOptions({ type: 'kafka', brokers: kafka.brokers, topic: `ws-hub-${name}`, groupPrefix: prefix.replace(/:/g, '-') }, url, prefix)
      return await Promise.all([0, 1, 2].map(async () => HubProcess.start(t, options, 60_000)))
    }

    t.test('a subscriber terminated mid-stream comes back on another instance with every publication once, in order', async (t) => {
      await lostSubscriber(t, await hubs(t, 'history-kafka-terminate'), 'terminate')
    })

    t.test('Kafka frozen for 5 s while history is up: subscribers on other instances fill the gap from history', async (t) => {
      t.teardown(() => kafka.thaw())
      await transportOutage(t, await hubs(t, 'history-kafka-frozen'), async () => kafka.freeze(), async () => kafka.thaw())
    })
  })
}
