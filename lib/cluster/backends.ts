import type { FastifyBaseLogger } from 'fastify'
import type { Broker } from './transport.js'
import { MemoryBroker } from './memory/memory-transport.js'
import type { Registry } from './registry.js'
import { MemoryRegistry } from './memory/memory-registry.js'
import { OptionsError, type BrokerOption, type RegistryOption } from '../options/hub-options.js'

export interface Owned<T> {
  value: T
  /**
   * Whether the hub created it, and so must close it. A backend built from a
   * client the user passed in closes only the connections it opened itself.
   */
  owned: boolean
}

/**
 * Builds the broker the options name. Network backends are imported lazily so
 * an in-memory hub never loads ioredis or kafkajs.
 */
export async function createBroker (option: BrokerOption, log: FastifyBaseLogger): Promise<Owned<Broker | null>> {
  switch (option.type) {
    case 'memory':
      // Without a shared bus there is nobody to talk to: skip the broker hop.
      return { value: option.bus === undefined ? null : new MemoryBroker(option.bus), owned: true }
    case 'custom':
      return { value: option.broker, owned: false }
    case 'redis': {
      const { RedisBroker } = await import('./redis/redis-transport.js')
      return { value: new RedisBroker(option, log), owned: true }
    }
    case 'kafka': {
      const { KafkaBroker } = await import('./kafka/kafka-transport.js')
      return { value: new KafkaBroker(option, log), owned: true }
    }
    default:
      throw new OptionsError(`fastify-ws-hub: option "broker.type" must be one of memory, redis, kafka, custom (got ${JSON.stringify((option as { type: unknown }).type)})`)
  }
}

export async function createRegistry (option: RegistryOption, log: FastifyBaseLogger): Promise<Owned<Registry>> {
  switch (option.type) {
    case 'memory':
      return { value: new MemoryRegistry(), owned: true }
    case 'custom':
      return { value: option.registry, owned: false }
    case 'redis': {
      const { RedisRegistry } = await import('./redis/redis-registry.js')
      return { value: new RedisRegistry(option, log), owned: true }
    }
    default:
      throw new OptionsError(`fastify-ws-hub: option "registry.type" must be one of memory, redis, custom (got ${JSON.stringify((option as { type: unknown }).type)})`)
  }
}
