/**
 * The Kafka source against a real Kafka: the shared source suite, then what
 * is Kafka's own (dead letters with their headers, lag, order per partition
 * with several partitions, a broker that stops answering). Skipped without
 * KAFKA_BROKERS, except in CI where that is a failure.
 */
import t from 'tap'
import { Kafka, logLevel, type Admin, type Producer } from 'kafkajs'
import { normalizeSources, type KafkaSourceConfig } from '../lib/options/source-options.js'
import { KafkaSource } from '../lib/sources/kafka/kafka-source.js'
import { OFFSET_HEADER, PARTITION_HEADER, REASON_HEADER, TOPIC_HEADER } from '../lib/sources/kafka/kafka-records.js'
import { SourceRunner } from '../lib/sources/source-runner.js'
import type { SourceContext } from '../lib/sources/source.js'
import { FakePublisher, sourceSuite, uniqueName, quietLogger } from '../lib/testing/source-suite.js'
import { kafkaBrokers, PrivateKafka } from './helpers/kafka-server.js'
import { record, range } from './helpers/source-records.js'
import { until } from './helpers.js'

const context = (instanceId: string): SourceContext => ({
  instanceId,
  name: 'kafka',
  log: quietLogger,
  lease: () => { throw new Error('a Kafka source holds no lease: its group orders it') }
})

function sourceConfig (brokers: string[], topic: string, extra: Record<string, unknown> = {}): KafkaSourceConfig {
  const [config] = normalizeSources([{
    type: 'kafka',
    brokers,
    topics: [topic],
    groupId: `group-${topic}`,
    from: 'earliest',
    // The broker's smallest session; a short heartbeat makes rebalances quick.
    sessionTimeoutMs: 6_000,
    heartbeatIntervalMs: 1_000,
    ...extra
  }])
  if (config?.type !== 'kafka') throw new Error('not a kafka source')
  return config
}

function runner (consumer: KafkaSource, publisher: FakePublisher): SourceRunner {
  return new SourceRunner({ name: 'kafka', type: 'kafka', consumer, publisher, log: quietLogger, retryMs: 50, maxRetryMs: 200, lagIntervalMs: 200 })
}

/** Produces probes until one is published: the source has joined its group and reads. */
async function reading (produce: (texts: string[]) => Promise<void>, publisher: FakePublisher): Promise<void> {
  await until(async () => {
    await produce([record(-1)])
    await publisher.waitFor(publisher.published.length + 1, 1_000).catch(() => {})
    return publisher.published.some((p) => p.n === -1)
  }, 30_000, 'the source to read')
  publisher.published.length = 0
}

t.test('a source whose broker cannot be reached: start returns, it is down, close ends its retries', async (t) => {
  const publisher = new FakePublisher()
  const source = new KafkaSource(sourceConfig(['127.0.0.1:1'], 'nowhere'), context('lonely'))
  const run = runner(source, publisher)
  await run.start()
  t.equal(run.state(), 'down')
  t.equal(await source.lag(), null, 'lag unknown')
  await run.close()
  await source.close()
  t.pass('close is idempotent')
})

t.test('a heartbeat not below the session timeout is an option error', async (t) => {
  t.throws(() => normalizeSources([{ type: 'kafka', brokers: ['k:9092'], topics: ['t'], sessionTimeoutMs: 6_000, heartbeatIntervalMs: 6_000 }]), {
    code: 'WS_HUB_INVALID_OPTION',
    message: /sources\[0\]\.heartbeatIntervalMs" must be below sessionTimeoutMs/
  })
})

t.test('a source closed before it started closes', async (t) => {
  const source = new KafkaSource(sourceConfig(['127.0.0.1:1'], 'nowhere'), context('never'))
  await source.close()
  t.pass('closed')
})

const brokers = kafkaBrokers(t)
if (brokers === null) {
  t.test('kafka source tests', { skip: 'KAFKA_BROKERS is not set; run `bash scripts/kafka.sh start` and export what it prints' }, async () => {})
} else {
  const kafka = new Kafka({ clientId: 'source-kafka-test', brokers, logLevel: logLevel.NOTHING })
  let admin: Admin
  let producer: Producer
  t.before(async () => {
    admin = kafka.admin()
    producer = kafka.producer({ allowAutoTopicCreation: false })
    await admin.connect()
    await producer.connect()
  })
  t.teardown(async () => {
    await producer.disconnect()
    await admin.disconnect()
  })

  const topic = async (partitions: number): Promise<string> => {
    const name = uniqueName('ws-hub-source').replace(/[^A-Za-z0-9-]/g, '-')
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: name, numPartitions: partitions, replicationFactor: 1 }] })
    return name
  }
  // acks -1 and one send per call: the texts land in the order given.
  const produce = async (place: string, texts: readonly string[], partition?: number): Promise<void> => {
    await producer.send({ topic: place, acks: -1, messages: texts.map((value) => ({ value, ...(partition === undefined ? {} : { partition }) })) })
  }

  t.test('source suite', async (t) => {
    await sourceSuite(t, 'kafka', {
      place: async () => await topic(1),
      // Two partitions: each of the two members reads one, and the one left takes both.
      groupPlace: async () => await topic(2),
      consumer: (place, { instanceId, group }) => new KafkaSource(sourceConfig(brokers, place, { groupId: group }), context(instanceId)),
      produce: async (place, texts) => { await produce(place, texts) },
      timeoutMs: 30_000,
      settleMs: 1_000
    })
  })

  t.test('a bad record goes to the dead-letter topic as read, with the reason and where it was read', async (t) => {
    const place = await topic(1)
    const dead = await topic(1)
    const publisher = new FakePublisher()
    const source = new KafkaSource(sourceConfig(brokers, place, { deadLetter: { topic: dead } }), context(uniqueName('dl')))
    const run = runner(source, publisher)
    t.teardown(async () => { await run.close() })
    await run.start()
    await reading(async (texts) => { await produce(place, texts) }, publisher)
    const offsets = await admin.fetchTopicOffsets(place)
    const badOffset = offsets[0]?.high
    await producer.send({ topic: place, acks: -1, messages: [{ key: 'poison-key', value: '{not json', headers: { trace: 'abc' } }, { value: record(1) }] })
    await publisher.waitFor(1, 30_000)
    t.same(publisher.published.map((p) => p.n), [1], 'the record after it flows')
    await until(() => run.status().deadLettered === 1, 10_000, 'the dead letter to be counted')
    t.equal(run.status().skipped.invalid_json, 0, 'dead-lettered, not skipped')

    const reader = kafka.consumer({ groupId: uniqueName('dl-reader') })
    t.teardown(async () => { await reader.disconnect() })
    await reader.connect()
    await reader.subscribe({ topics: [dead], fromBeginning: true })
    const got: Array<{ key: string | undefined, value: string | undefined, headers: Record<string, string> }> = []
    await reader.run({
      eachMessage: async ({ message }) => {
        const headers: Record<string, string> = {}
        for (const [name, value] of Object.entries(message.headers ?? {})) headers[name] = String(value)
        got.push({ key: message.key?.toString(), value: message.value?.toString(), headers })
      }
    })
    await until(() => got.length > 0, 30_000, 'the dead letter')
    t.same(got[0], {
      key: 'poison-key',
      value: '{not json',
      headers: { trace: 'abc', [REASON_HEADER]: 'invalid_json', [TOPIC_HEADER]: place, [PARTITION_HEADER]: '0', [OFFSET_HEADER]: badOffset }
    })
  })

  t.test('lag counts what the group has not committed, and falls to 0 once the hub takes it', async (t) => {
    const place = await topic(2)
    const publisher = new FakePublisher()
    const source = new KafkaSource(sourceConfig(brokers, place), context(uniqueName('lag')))
    const run = runner(source, publisher)
    t.teardown(async () => { await run.close() })
    await run.start()
    await reading(async (texts) => { await produce(place, texts) }, publisher)
    await until(async () => (await source.lag()) === 0, 10_000, 'lag 0 once the probes are committed')
    publisher.down = true
    await produce(place, range(0, 5).map((n) => record(n)), 0)
    await produce(place, range(5, 8).map((n) => record(n)), 1)
    await until(async () => (await source.lag()) === 8, 10_000, 'lag 8 while the hub refuses')
    publisher.down = false
    await publisher.waitFor(8, 30_000)
    await until(async () => (await source.lag()) === 0, 10_000, 'lag 0 again')
    await until(() => run.status().lag === 0, 5_000, 'the runner to report it')
  })

  t.test('three partitions: each keeps its order through failed publishes', async (t) => {
    const place = await topic(3)
    const publisher = new FakePublisher()
    const source = new KafkaSource(sourceConfig(brokers, place), context(uniqueName('order')))
    const run = runner(source, publisher)
    t.teardown(async () => { await run.close() })
    await run.start()
    await reading(async (texts) => { await produce(place, texts, 0) }, publisher)
    // Record n goes to partition n % 3, 300 of them, produced in a few sends per partition.
    for (let from = 0; from < 300; from += 60) {
      await Promise.all([0, 1, 2].map(async (partition) => {
        await produce(place, range(from, from + 60).filter((n) => n % 3 === partition).map((n) => record(n)), partition)
      }))
      publisher.failures += 7
    }
    await until(() => publisher.firsts().length >= 300, 30_000, 'all 300 records')
    const firsts = publisher.firsts()
    for (const partition of [0, 1, 2]) {
      const share = firsts.filter((n) => n % 3 === partition)
      t.same(share, range(0, 300).filter((n) => n % 3 === partition), `partition ${partition} in order`)
    }
    t.ok(publisher.published.every((p) => p.key?.startsWith(`kafka:${place}:`)), 'keys name the coordinates')
  })

  t.test('a frozen broker makes the source down, and up again once it answers', async (t) => {
    const kafkaServer = await PrivateKafka.start(t)
    const privateKafka = new Kafka({ clientId: 'source-kafka-test-private', brokers: kafkaServer.brokers, logLevel: logLevel.NOTHING })
    const privateAdmin = privateKafka.admin()
    const privateProducer = privateKafka.producer({ allowAutoTopicCreation: false })
    await privateAdmin.connect()
    await privateProducer.connect()
    t.teardown(async () => {
      kafkaServer.thaw()
      await privateProducer.disconnect()
      await privateAdmin.disconnect()
    })
    const place = uniqueName('ws-hub-source-frozen').replace(/[^A-Za-z0-9-]/g, '-')
    await privateAdmin.createTopics({ waitForLeaders: true, topics: [{ topic: place, numPartitions: 1, replicationFactor: 1 }] })
    const send = async (texts: string[]): Promise<void> => { await privateProducer.send({ topic: place, acks: -1, messages: texts.map((value) => ({ value })) }) }
    const publisher = new FakePublisher()
    const source = new KafkaSource(sourceConfig(kafkaServer.brokers, place), context(uniqueName('frozen')))
    const run = runner(source, publisher)
    t.teardown(async () => { await run.close() })
    await run.start()
    await reading(send, publisher)
    t.equal(run.state(), 'up')
    await kafkaServer.freeze()
    await until(() => run.state() === 'down', 20_000, 'down while frozen')
    t.pass('down while the broker is frozen')
    kafkaServer.thaw()
    await until(() => run.state() === 'up', 60_000, 'up again')
    await send([record(7)])
    await until(() => publisher.firsts().includes(7), 30_000, 'a record after the thaw')
    t.pass('reads again')
  })
}
