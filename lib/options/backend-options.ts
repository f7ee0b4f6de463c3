import type { Redis } from 'ioredis'
import type { Transport } from '../cluster/transport.js'
import type { MemoryBus } from '../cluster/memory/memory-transport.js'
import type { Limiter } from '../cluster/limiter.js'
import type { Directory } from '../cluster/directory.js'

/** Redis pub/sub transport. Pass `url` (the hub opens and closes its connections) or `client` (yours: duplicated for subscribing, never closed). */
export interface RedisBrokerOptions {
  type: 'redis'
  url?: string
  client?: Redis
  /** Prefix of every channel name, so several hubs can share one Redis. Default `ws-hub:`. */
  channelPrefix?: string
}

/**
 * Kafka transport: every instance reads every message through its own
 * consumer group `<groupPrefix>-<instanceId>`, starting at the end of the
 * topic (no history is replayed).
 */
export interface KafkaBrokerOptions {
  type: 'kafka'
  brokers: string[]
  topic?: string
  clientId?: string
  groupPrefix?: string
  partitions?: number
  replicationFactor?: number
  acks?: 1 | -1
  publishTimeoutMs?: number
  maxPendingPublishes?: number
  startTimeoutMs?: number
  maxWaitTimeInMs?: number
  ssl?: boolean | import('node:tls').ConnectionOptions
  sasl?: import('kafkajs').SASLOptions
}

export interface RedisRegistryOptions {
  type: 'redis'
  url?: string
  client?: Redis
  keyPrefix?: string
  leaseMs?: number
}

export type BrokerOption =
  | { type: 'memory', bus?: MemoryBus }
  | { type: 'custom', transport: Transport }
  | RedisBrokerOptions
  | KafkaBrokerOptions

export type RegistryOption =
  | { type: 'memory' }
  | { type: 'custom', limiter: Limiter, directory: Directory }
  | RedisRegistryOptions
