/** What the Kafka transport asks of the cluster itself: its clients, its topic, and its group's removal. */
import type { FastifyBaseLogger } from 'fastify'
import { Kafka, logLevel, Partitioners, type Consumer, type LogEntry, type Producer } from 'kafkajs'
import type { KafkaConfig } from './kafka-options.js'
import { CLOSE_STEP_MS, settle, withTimeout } from './kafka-timeouts.js'

/** Longest wait between kafkajs' own retries, and between our consumer restarts. */
export const RETRY_MAX_MS = 5_000

/** What a kafkajs client is built from: the transport's options or a Kafka source's. */
export type KafkaClientConfig = Pick<KafkaConfig, 'clientId' | 'brokers' | 'ssl' | 'sasl'>

/**
 * A kafkajs client logging through the hub's logger. `quiet()` true drops
 * kafkajs' lines to debug: once an outage has been reported, its every
 * reconnect attempt is not news. `who` names the user of the client in each
 * line (`{ source: 'prices' }`), for more than one in a process.
 */
export function createKafka (config: KafkaClientConfig, log: FastifyBaseLogger, quiet: () => boolean, who: Record<string, string> = {}): Kafka {
  const { clientId, brokers, ssl, sasl } = config
  const label = Object.entries(who).map(([key, value]) => `${key} ${value}: `).join('')
  // kafkajs reports its own retries at ERROR even when they succeed (a topic
  // another instance created first, a coordinator still loading). What really
  // failed reaches the transport or the source as a rejection or a CRASH and
  // is logged there with context, so kafkajs' lines are context: warn, never stdout.
  const write = (entry: LogEntry): void => {
    const { message: text, timestamp: _timestamp, logger: _logger, ...extra } = entry.log
    log[quiet() ? 'debug' : 'warn']({ kafkajs: entry.namespace, ...who, ...extra }, `ws-hub: ${label}kafkajs: ${String(text)}`)
  }
  return new Kafka({
    clientId,
    brokers,
    ...(ssl === undefined ? {} : { ssl }),
    ...(sasl === undefined ? {} : { sasl }),
    connectionTimeout: 3_000,
    // kafkajs' default is 30 s; a broker that stops answering without
    // closing the socket should be given up on sooner.
    requestTimeout: 10_000,
    retry: { retries: 3, initialRetryTime: 300, maxRetryTime: RETRY_MAX_MS },
    logLevel: logLevel.WARN,
    logCreator: () => write
  })
}

/** The transport's producer; publish order and timeouts are KafkaPublisher's. */
export function createProducer (kafka: Kafka): Producer {
  return kafka.producer({
    // We create the topic ourselves, with the partitions and replication we
    // chose; a typo'd topic must not appear with broker defaults.
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    // Few, short retries: they ride out a leader change, and the publish
    // still settles within publishTimeoutMs plus a few hundred ms.
    retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1_000 }
  })
}

/** The consumer of one instance's own group, the group's only member. */
export function createConsumer (kafka: Kafka, groupId: string, config: KafkaConfig): Consumer {
  return kafka.consumer({
    groupId,
    // One member per group: the timeouts only bound how long a crashed
    // instance holds its partitions and how long a restart's join takes.
    sessionTimeout: 10_000,
    rebalanceTimeout: 10_000,
    heartbeatInterval: 3_000,
    maxWaitTimeInMs: config.maxWaitTimeInMs,
    minBytes: 1,
    allowAutoTopicCreation: false,
    // restartOnFailure false: every crash comes to the transport, which
    // restarts with its own backoff (ConsumerRestarts) whether kafkajs
    // thought it retriable or not.
    retry: { retries: 3, initialRetryTime: 300, maxRetryTime: RETRY_MAX_MS, restartOnFailure: async () => false }
  })
}

/**
 * Creates the topic if missing and returns where each partition ends now.
 * The consumer seeks there on joining, so a record published after start()
 * resolves is always read, and nothing published before it began is.
 */
export async function prepareTopic (kafka: Kafka, config: KafkaConfig, log: FastifyBaseLogger): Promise<Map<number, bigint>> {
  const { topic, partitions, replicationFactor } = config
  const admin = kafka.admin()
  try {
    await admin.connect()
    // listTopics, not fetchTopicMetadata: asking for a missing topic's
    // metadata auto-creates it on clusters that allow that.
    if (!(await admin.listTopics()).includes(topic)) {
      try {
        await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: partitions, replicationFactor }] })
      } catch (err) {
        // Instances starting together race to create it; the loser's
        // request fails with TOPIC_ALREADY_EXISTS, which is success here.
        if (!hasType(err, 'TOPIC_ALREADY_EXISTS')) throw err
      }
    }
    // A topic just created (by us or by a racing instance, whose
    // waitForLeaders we did not share) may not have elected its leaders
    // yet: NOT_LEADER / LEADER_NOT_AVAILABLE are worth a few retries. The
    // caller's start deadline bounds the whole.
    const offsets = await retryWhile(async () => admin.fetchTopicOffsets(topic), isRetriable)
    return new Map(offsets.map(({ partition, high }) => [partition, BigInt(high)]))
  } finally {
    await settle(admin.disconnect(), CLOSE_STEP_MS, 'admin disconnect', log)
  }
}

const LEADER_RETRIES = 20
const LEADER_RETRY_MS = 250

async function retryWhile<T> (work: () => Promise<T>, retriable: (err: unknown) => boolean): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work()
    } catch (err) {
      if (attempt >= LEADER_RETRIES || !retriable(err)) throw err
      await new Promise((resolve) => setTimeout(resolve, LEADER_RETRY_MS))
    }
  }
}

/** kafkajs protocol errors carry `type` and `retriable`; aggregate ones list theirs in `errors`. */
function hasType (err: unknown, type: string): boolean {
  if (err === null || typeof err !== 'object') return false
  const e = err as { type?: unknown, errors?: unknown }
  if (e.type === type) return true
  return Array.isArray(e.errors) && e.errors.length > 0 && e.errors.every((inner) => hasType(inner, type))
}

function isRetriable (err: unknown): boolean {
  if (err === null || typeof err !== 'object') return false
  const e = err as { retriable?: unknown, type?: unknown }
  return e.retriable === true || e.type === 'NOT_LEADER_FOR_PARTITION' || e.type === 'LEADER_NOT_AVAILABLE' || e.type === 'UNKNOWN_TOPIC_OR_PARTITION'
}

/** Best effort: a group left behind expires with offsets.retention.minutes. */
export async function deleteGroup (kafka: Kafka, groupId: string, log: FastifyBaseLogger): Promise<void> {
  const admin = kafka.admin({ retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 500 } })
  const work = (async () => {
    await admin.connect()
    await admin.deleteGroups([groupId])
  })()
  try {
    await withTimeout(work, CLOSE_STEP_MS, 'delete consumer group')
  } catch (err) {
    log.warn({ err, groupId }, 'ws-hub: could not delete the kafka consumer group; it expires with offsets.retention.minutes')
  } finally {
    await settle(admin.disconnect(), CLOSE_STEP_MS, 'admin disconnect', log)
  }
}
