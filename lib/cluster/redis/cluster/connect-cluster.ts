import { Cluster, type ClusterNode, type ClusterOptions } from 'ioredis'
import { CLOSE_TIMEOUT_MS, COMMAND_TIMEOUT_MS } from '../connect.js'

/** Where a Redis Cluster backend connects: startup nodes, and ioredis options passed through. */
export interface RedisClusterSource {
  /** Any reachable subset of the cluster, as `host:port` or `{ host, port }`. */
  nodes: ReadonlyArray<string | { host: string, port: number }>
  options?: ClusterOptions | undefined
}

/**
 * How often the slot map is read again even when nothing failed. ioredis
 * leaves this off; without it a slot moved by resharding (Redis only
 * unsubscribes the moved channels, which ioredis does not act on) would
 * stay unnoticed until a command is redirected.
 */
export const SLOTS_REFRESH_INTERVAL_MS = 2_000

/**
 * The settings every cluster connection of a backend runs with; they win over
 * the user's `options` (merged field by field, `redisOptions` too), for the
 * same reasons as the single-Redis SETTINGS in ../connect.ts.
 */
const SETTINGS: ClusterOptions = {
  // SSUBSCRIBE/SPUBLISH: one subscriber connection per master, each channel
  // subscribed on the master that serves its slot.
  shardedSubscribers: true,
  lazyConnect: true,
  // Kept on, unlike the single-Redis settings: ioredis opens a node's
  // connection on its first command, and with the queue off every command
  // sent while it is still connecting fails as "Connection is closed", the
  // same error as a command lost with a dying master, so a burst of
  // publishes to a master not used yet would all fail. The backend never
  // sends while the cluster is not 'ready' (where this queue would hold
  // commands until it is); see RedisClusterTransport's reachability check.
  enableOfflineQueue: true,
  slotsRefreshInterval: SLOTS_REFRESH_INTERVAL_MS,
  // Any value above 0 re-sends a command that failed with "Connection is
  // closed", which is also how a command in flight on a dying master fails:
  // that SPUBLISH may have run, and sending it again would deliver it twice.
  retryDelayOnFailover: 0,
  // CLUSTERDOWN (a failover under way) is answered without running the
  // command, so a retry would be safe, but it comes 100 ms later, behind
  // publishes made since: an origin's envelopes on the channel would arrive
  // out of order. It fails instead, as a refusal. MOVED and ASK are
  // retried at once, in order.
  retryDelayOnClusterDown: 0,
  redisOptions: {
    commandTimeout: COMMAND_TIMEOUT_MS,
    // In-flight commands reject at the first drop; none is re-sent.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // Channels are named by the backend's own prefix option.
    keyPrefix: ''
  }
}

/** A new Cluster client the caller owns and must close (`closeCluster`). */
export function openCluster (source: RedisClusterSource, name: string): Cluster {
  const user = source.options ?? {}
  const nodes: ClusterNode[] = source.nodes.map((node) => typeof node === 'string' ? node : { host: node.host, port: node.port })
  return new Cluster(nodes, {
    ...user,
    ...SETTINGS,
    redisOptions: { ...user.redisOptions, ...SETTINGS.redisOptions, connectionName: name.replace(/[^\x21-\x7e]/g, '_').slice(0, 200) }
  })
}

/** Where a cluster source points, for error messages; never includes a password. */
export function describeCluster (source: RedisClusterSource): string {
  const nodes = source.nodes.map((node) => typeof node === 'string' ? node : `${node.host}:${node.port}`)
  return `the Redis Cluster at ${nodes.join(', ')}`
}

/**
 * Closes a Cluster client politely (QUIT on every node) within
 * CLOSE_TIMEOUT_MS, then drops whatever is left. Never rejects.
 */
export async function closeCluster (cluster: Cluster): Promise<void> {
  if (cluster.status === 'end') return
  const ended = new Promise<void>((resolve) => cluster.once('end', () => resolve()))
  if (cluster.status === 'ready') await withTimeout(cluster.quit().then(() => undefined, () => undefined), CLOSE_TIMEOUT_MS)
  cluster.disconnect()
  await withTimeout(ended, CLOSE_TIMEOUT_MS)
}

async function withTimeout (promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, ms) })
  try {
    await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
