import { KafkaOptions, type KafkaBrokerOptions, type KafkaConfig } from '../../options/backend-options.js'

export type { KafkaConfig }

/** Defaults of the optional `KafkaBrokerOptions` fields, read from the schema. */
export const KAFKA_DEFAULTS = KafkaOptions.defaults()

/**
 * Fills the defaults and validates, naming the option in a one-line error.
 * The hub has done this already; a broker built directly (tests, tools)
 * gets the same checks.
 */
export function normalizeKafkaOptions (options: KafkaBrokerOptions): KafkaConfig {
  return KafkaOptions.normalize(options, 'broker')
}
