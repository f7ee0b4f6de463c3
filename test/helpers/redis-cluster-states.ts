import { Cluster } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { RedisClusterState } from '../../lib/cluster/redis/redis-cluster-state.js'
import type { ClusterStateFactory } from '../../lib/testing/cluster-state-factory.js'
import type { ClusterAddress } from './redis-cluster.js'
import { uniquePrefix } from './redis-server.js'

/** An admin client on a cluster, closed when the test ends. */
export function adminCluster (t: { teardown: (fn: () => unknown) => void }, nodes: ClusterAddress[]): Cluster {
  const admin = openAdmin(nodes)
  t.teardown(() => { admin.disconnect() })
  return admin
}

function openAdmin (nodes: ClusterAddress[]): Cluster {
  const admin = new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: 1 } })
  admin.on('error', () => {})
  return admin
}

/**
 * Every key matching `pattern` (there is no cluster-wide SCAN): every node
 * is asked, replicas too, since after a failover the admin's map may not
 * know the promoted one as a master yet. A node that is gone is skipped.
 */
export async function clusterKeys (admin: Cluster, pattern: string): Promise<string[]> {
  if (admin.status !== 'ready') await new Promise((resolve) => admin.once('ready', resolve))
  const keys = new Set<string>()
  for (const node of admin.nodes('all')) {
    let cursor = '0'
    try {
      do {
        const [next, batch] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
        cursor = next
        for (const key of batch) keys.add(key)
      } while (cursor !== '0')
    } catch (err) {
      if (node.status === 'ready') throw err
    }
  }
  return [...keys].sort()
}

/** Deletes them one by one: a multi-key DEL must stay in one slot. */
export async function deleteClusterKeys (admin: Cluster, pattern: string): Promise<void> {
  await Promise.all((await clusterKeys(admin, pattern)).map(async (key) => await admin.del(key)))
}

export interface ClusterHome {
  /** The option as given; the registry's keys are under `{<prefix>}`. */
  prefix: string
  admin: Cluster
  join: (instanceId: string, leaseMs?: number, log?: FastifyBaseLogger) => Promise<RedisClusterState>
}

/**
 * Cluster states on one fresh prefix of a Redis Cluster. One teardown
 * closes them, then deletes every key of the prefix.
 */
export function clusterHome (t: { teardown: (fn: () => unknown) => void }, nodes: ClusterAddress[], name: string, log: FastifyBaseLogger): ClusterHome {
  const prefix = uniquePrefix(name)
  const admin = openAdmin(nodes)
  const states: RedisClusterState[] = []
  // One teardown, so the order holds: the states, their keys, the admin.
  t.teardown(async () => {
    try {
      await Promise.all(states.map(async (state) => await state.close()))
      await deleteClusterKeys(admin, `{${prefix}}*`)
    } finally {
      admin.disconnect()
    }
  })
  return {
    prefix,
    admin,
    join: async (instanceId, leaseMs = 15_000, own = log) => {
      const state = new RedisClusterState({ type: 'redis', cluster: { nodes }, keyPrefix: prefix, leaseMs }, own)
      states.push(state)
      await state.directory.join(instanceId)
      return state
    }
  }
}

/** The factory of the conformance suites, on a Redis Cluster. */
export function clusterSuiteFactory (nodes: ClusterAddress[], log: FastifyBaseLogger, crashLeaseMs: number): ClusterStateFactory {
  const homes = new WeakMap<object, ClusterHome>()
  return {
    cluster: async (t) => {
      const home = clusterHome(t, nodes, 'cluster-registry', log)
      return async (instanceId, options) => {
        const state = await home.join(instanceId, options?.leaseMs)
        homes.set(state, home)
        return state
      }
    },
    crashLeaseMs,
    lapse: async (state, instanceId) => {
      const home = homes.get(state)
      if (home === undefined) throw new Error(`lapse: ${instanceId} was not joined through this factory`)
      await home.admin.zadd(`{${home.prefix}}instances`, 0, instanceId)
    }
  }
}
