import { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { RedisClusterState } from '../../lib/cluster/redis/redis-cluster-state.js'
import { deleteKeysUnder, uniquePrefix } from './redis-server.js'

export interface JoinOptions {
  leaseMs?: number | undefined
  url?: string
  client?: Redis
  log?: FastifyBaseLogger
}

export interface ClusterStates {
  prefix: string
  admin: Redis
  /** A cluster state on the shared prefix, joined as `instanceId`. */
  join: (instanceId: string, options?: JoinOptions) => Promise<RedisClusterState>
}

/**
 * Redis cluster states on one fresh prefix. One teardown closes them,
 * deletes every key under the prefix and closes the admin client, in that
 * order.
 */
export function clusterStates (t: { teardown: (fn: () => unknown) => void }, redisUrl: string, name: string, log: FastifyBaseLogger): ClusterStates {
  const prefix = uniquePrefix(name)
  const admin = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  const states: RedisClusterState[] = []
  t.teardown(async () => {
    await Promise.all(states.map(async (state) => state.close()))
    await deleteKeysUnder(admin, prefix)
    await admin.quit()
  })
  return {
    prefix,
    admin,
    join: async (instanceId, options = {}) => {
      const source = options.client === undefined ? { url: options.url ?? redisUrl } : { client: options.client }
      const state = new RedisClusterState({ type: 'redis', ...source, keyPrefix: prefix, leaseMs: options.leaseMs ?? 15_000 }, options.log ?? log)
      states.push(state)
      await state.directory.join(instanceId)
      return state
    }
  }
}
