/**
 * Turns environment variables into server and hub options. Parsing happens
 * once, up front, so a typo in the environment stops the server at start
 * instead of surfacing as odd behaviour later.
 *
 * PORT, HOST, LOG_LEVEL, API_KEY, MAX_CONNECTIONS_PER_IP: the server.
 * REDIS_URL, KAFKA_BROKERS: the backends (see `backends`). KAFKA_BROKERS
 * also turns on the Kafka price feed (see `priceFeedSource`), whose topic
 * and consumer group PRICE_FEED_TOPIC and PRICE_FEED_GROUP override.
 */
import type { BrokerOption, KafkaSourceOptions, KafkaSourceRecord, RegistryOption, SourceTarget, WsHubOptions } from 'fastify-ws-hub'
import { apiKeyAuth } from './api-key.js'
import { PRICES_TOPIC } from './prices.js'

export interface ExampleConfig {
  port: number
  host: string
  logLevel: string
  /** Everything the hub is registered with except the demo service. */
  hub: WsHubOptions
}

/** Which variables the example reads; `process.env` fits. */
export type Env = Record<string, string | undefined>

export const CONFIG_DEFAULTS = Object.freeze({
  port: 3000,
  // `localhost` makes Fastify listen on both 127.0.0.1 and ::1, so
  // http://localhost:3000 works whichever one the browser picks. The Docker
  // image sets HOST=0.0.0.0.
  host: 'localhost',
  logLevel: 'info'
})

/** The Kafka topic price-feed.ts produces ticks to and the app's source reads. */
export const PRICE_FEED_TOPIC = 'ws-hub-prices'
/**
 * The consumer group every app instance joins: Kafka hands each tick to one
 * of them, and the hub publishes it to the subscribers of all.
 */
export const PRICE_FEED_GROUP = 'example-prices'

export class ConfigError extends Error {
  override name = 'ConfigError'
}

/** Where the price feed is: what price-feed.ts produces to and the app's source reads. */
export interface PriceFeedConfig {
  brokers: string[]
  topic: string
  group: string
}

export function readConfig (env: Env): ExampleConfig {
  const hub: WsHubOptions = { ...backends(env) }
  const feed = priceFeed(env)
  if (feed !== undefined) hub.sources = [priceFeedSource(feed)]
  const perIp = integer(env, 'MAX_CONNECTIONS_PER_IP', 1, Number.MAX_SAFE_INTEGER)
  if (perIp !== undefined) hub.maxConnectionsPerIp = perIp
  // The hub refuses to guess: the push API is open only by an explicit
  // choice, made here for a demo that runs with no configuration at all.
  const apiKey = text(env, 'API_KEY')
  hub.rest = { auth: apiKey === undefined ? false : apiKeyAuth(apiKey) }
  return {
    port: integer(env, 'PORT', 0, 65_535) ?? CONFIG_DEFAULTS.port,
    host: text(env, 'HOST') ?? CONFIG_DEFAULTS.host,
    logLevel: text(env, 'LOG_LEVEL') ?? CONFIG_DEFAULTS.logLevel,
    hub
  }
}

/**
 * REDIS_URL alone: Redis carries messages and holds the registry.
 * KAFKA_BROKERS: Kafka carries messages; the registry (who is connected
 * where, per-IP counts) still needs Redis, because Kafka is not a store.
 * Neither: everything stays in this process.
 */
function backends (env: Env): { broker?: BrokerOption, registry?: RegistryOption } {
  const redisUrl = text(env, 'REDIS_URL')
  const kafkaBrokers = list(env, 'KAFKA_BROKERS')
  const result: { broker?: BrokerOption, registry?: RegistryOption } = {}
  if (redisUrl !== undefined) {
    result.broker = { type: 'redis', url: redisUrl }
    result.registry = { type: 'redis', url: redisUrl }
  }
  if (kafkaBrokers !== undefined) result.broker = { type: 'kafka', brokers: kafkaBrokers }
  return result
}

/** The price feed's settings, for price-feed.ts; it has nothing to produce to without KAFKA_BROKERS. */
export function readPriceFeedConfig (env: Env): PriceFeedConfig {
  const feed = priceFeed(env)
  if (feed === undefined) throw new ConfigError('KAFKA_BROKERS must be set: the price feed produces to Kafka')
  return feed
}

function priceFeed (env: Env): PriceFeedConfig | undefined {
  const brokers = list(env, 'KAFKA_BROKERS')
  if (brokers === undefined) return undefined
  return { brokers, topic: text(env, 'PRICE_FEED_TOPIC') ?? PRICE_FEED_TOPIC, group: text(env, 'PRICE_FEED_GROUP') ?? PRICE_FEED_GROUP }
}

/**
 * The ticks price-feed.ts produces, read by one instance each (a shared
 * consumer group) and published to `prices` on every instance. `from` stays
 * `latest`: a new group starts at the live price, not at old ticks.
 */
function priceFeedSource (feed: PriceFeedConfig): KafkaSourceOptions {
  return { type: 'kafka', name: 'price-feed', brokers: feed.brokers, topics: [feed.topic], groupId: feed.group, map: tickTarget }
}

/**
 * A record's value is one tick as JSON. A value that is not JSON throws a
 * SyntaxError, which the hub counts as `invalid_json`; one of the wrong
 * shape fails the topic's schema (`invalid_message`). A record with no value
 * (a tombstone) carries no tick and is skipped.
 */
function tickTarget (record: KafkaSourceRecord): SourceTarget | null {
  if (record.value === null) return null
  const message: unknown = JSON.parse(record.value)
  return { topic: PRICES_TOPIC, message }
}

/** A set, non-blank variable, trimmed; blank counts as unset, as shells often export `X=`. */
function text (env: Env, name: string): string | undefined {
  const value = env[name]?.trim()
  return value === undefined || value === '' ? undefined : value
}

function list (env: Env, name: string): string[] | undefined {
  const value = text(env, name)
  if (value === undefined) return undefined
  const items = value.split(',').map((item) => item.trim()).filter((item) => item !== '')
  if (items.length === 0) throw new ConfigError(`${name} must be a comma-separated list (got ${JSON.stringify(env[name])})`)
  return items
}

function integer (env: Env, name: string, min: number, max: number): number | undefined {
  const value = text(env, name)
  if (value === undefined) return undefined
  // Number('') and Number('1e3') would slip through a plain Number() check.
  const parsed = /^\d+$/.test(value) ? Number(value) : Number.NaN
  if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(env[name])})`)
  }
  return parsed
}
