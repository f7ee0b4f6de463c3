/** The kafkajs clients of one Kafka source, each setting with its reason. */
import type { FastifyBaseLogger } from 'fastify'
import type { Consumer, Kafka, Producer } from 'kafkajs'
import type { KafkaSourceConfig } from '../../options/source-options.js'
import { createKafka as createClusterKafka, RETRY_MAX_MS } from '../../cluster/kafka/kafka-cluster.js'

export { RETRY_MAX_MS }

/**
 * How long an idle fetch waits on the broker for records. Records are
 * returned as soon as one exists (minBytes 1), so this only sets how often
 * an idle consumer hears from the broker, which is what tells a hung broker.
 */
export const MAX_WAIT_MS = 1_000

/** A kafkajs client as the transport builds one, its log lines naming the source. */
export function createKafka (config: KafkaSourceConfig, log: FastifyBaseLogger, quiet: () => boolean): Kafka {
  return createClusterKafka(config, log, quiet, { source: config.name ?? 'kafka' })
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
