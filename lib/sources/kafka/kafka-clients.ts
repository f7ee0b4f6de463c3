/** The kafkajs clients of one Kafka source, each setting with its reason. */
import type { FastifyBaseLogger } from 'fastify'
import { Kafka, logLevel, type Consumer, type LogEntry, type Producer } from 'kafkajs'
import type { KafkaSourceConfig } from '../../options/source-options.js'

/** Longest wait between kafkajs' own retries, and between our consumer restarts. */
export const RETRY_MAX_MS = 5_000

/**
 * How long an idle fetch waits on the broker for records. Records are
 * returned as soon as one exists (minBytes 1), so this only sets how often
 * an idle consumer hears from the broker, which is what tells a hung broker.
 */
export const MAX_WAIT_MS = 1_000

/**
 * A kafkajs client logging through the hub's logger. kafkajs reports its
 * own retries at ERROR even when they succeed; what really failed reaches
 * the source as a CRASH and the runner logs it, so kafkajs' lines are
 * context: warn, and debug once `quiet()` (an outage already reported).
 */
export function createKafka (config: KafkaSourceConfig, log: FastifyBaseLogger, quiet: () => boolean): Kafka {
  const { clientId, brokers, ssl, sasl } = config
  const write = (entry: LogEntry): void => {
    const { message: text, timestamp: _timestamp, logger: _logger, ...extra } = entry.log
    log[quiet() ? 'debug' : 'warn']({ kafkajs: entry.namespace, source: config.name, ...extra }, `ws-hub: source ${config.name}: kafkajs: ${String(text)}`)
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

/** The group's consumer: every hub instance joins the same group, so each partition is read by one of them. */
export function createConsumer (kafka: Kafka, config: KafkaSourceConfig): Consumer {
  return kafka.consumer({
    groupId: config.groupId,
    sessionTimeout: config.sessionTimeoutMs,
    heartbeatInterval: config.heartbeatIntervalMs,
    maxWaitTimeInMs: MAX_WAIT_MS,
    minBytes: 1,
    // The topics are another service's: a typo must not create one with
    // broker defaults. The source stays down until the topic exists.
    allowAutoTopicCreation: false,
    // restartOnFailure false: every crash, retriable or not, comes to the
    // source, which restarts with its own backoff until close. kafkajs
    // gives up for good on a crash it thinks fatal (a failed first join, a
    // coordinator error), and a source must never stop reading by itself.
    retry: { retries: 3, initialRetryTime: 300, maxRetryTime: RETRY_MAX_MS, restartOnFailure: async () => false }
  })
}

/** The dead-letter producer. */
export function createProducer (kafka: Kafka): Producer {
  return kafka.producer({
    // Same reason as the consumer's: a dead-letter topic that does not exist
    // is a mistake to report, not a topic to create.
    allowAutoTopicCreation: false,
    retry: { retries: 3, initialRetryTime: 300, maxRetryTime: RETRY_MAX_MS }
  })
}
