import { OptionsError, type KafkaBrokerOptions } from '../../options/hub-options.js'

/** Defaults of the optional `KafkaBrokerOptions` fields. */
export const KAFKA_DEFAULTS = Object.freeze({
  topic: 'ws-hub-events',
  clientId: 'fastify-ws-hub',
  groupPrefix: 'ws-hub',
  partitions: 1,
  replicationFactor: -1,
  acks: 1 as 1 | -1,
  publishTimeoutMs: 3_000,
  maxPendingPublishes: 10_000,
  startTimeoutMs: 30_000,
  maxWaitTimeInMs: 50
})

/** Kafka broker options with every default filled in. */
export type KafkaConfig = Required<Omit<KafkaBrokerOptions, 'ssl' | 'sasl'>> & Pick<KafkaBrokerOptions, 'ssl' | 'sasl'>

/** Fills the defaults and validates, naming the option in a one-line error. */
export function normalizeKafkaOptions (options: KafkaBrokerOptions): KafkaConfig {
  const d = KAFKA_DEFAULTS
  const config: KafkaConfig = {
    type: 'kafka',
    brokers: options.brokers,
    topic: options.topic ?? d.topic,
    clientId: options.clientId ?? d.clientId,
    groupPrefix: options.groupPrefix ?? d.groupPrefix,
    partitions: options.partitions ?? d.partitions,
    replicationFactor: options.replicationFactor ?? d.replicationFactor,
    acks: options.acks ?? d.acks,
    publishTimeoutMs: options.publishTimeoutMs ?? d.publishTimeoutMs,
    maxPendingPublishes: options.maxPendingPublishes ?? d.maxPendingPublishes,
    startTimeoutMs: options.startTimeoutMs ?? d.startTimeoutMs,
    maxWaitTimeInMs: options.maxWaitTimeInMs ?? d.maxWaitTimeInMs,
    ssl: options.ssl,
    sasl: options.sasl
  }
  const fail = (name: string, rule: string, value: unknown): never => {
    throw new OptionsError(`fastify-ws-hub: option "broker.${name}" ${rule} (got ${JSON.stringify(value)})`)
  }
  if (!Array.isArray(config.brokers) || config.brokers.length === 0 || !config.brokers.every((b) => typeof b === 'string' && b !== '')) {
    fail('brokers', 'must be a non-empty array of "host:port" strings', config.brokers)
  }
  for (const name of ['topic', 'clientId', 'groupPrefix'] as const) {
    if (typeof config[name] !== 'string' || config[name] === '') fail(name, 'must be a non-empty string', config[name])
  }
  const integer = (name: keyof KafkaConfig, min: number, max = Number.MAX_SAFE_INTEGER): void => {
    const value = config[name]
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      fail(name, `must be an integer from ${min} to ${max}`, value)
    }
  }
  integer('partitions', 1)
  integer('replicationFactor', -1, 32_767)
  if (config.replicationFactor === 0) fail('replicationFactor', 'must be -1 (cluster default) or at least 1', 0)
  if (config.acks !== 1 && config.acks !== -1) fail('acks', 'must be 1 or -1', config.acks)
  integer('publishTimeoutMs', 1)
  integer('maxPendingPublishes', 1)
  integer('startTimeoutMs', 1)
  integer('maxWaitTimeInMs', 1, 1_000)
  return config
}
