import { Cluster, type ClusterOptions } from 'ioredis'
import { clusterNodes, COMMAND_TIMEOUT_MS, connectionName, SLOTS_REFRESH_INTERVAL_MS, type RedisClusterSource } from '../connect.js'

/**
 * The transport's cluster client. It differs from the one `openConnection`
 * gives the registry and history (../connect.ts) in what pub/sub needs:
 * sharded subscribers, an offline queue for masters not used yet, and no
 * delayed retry that would reorder an origin's envelopes. These settings win
 * over the user's `options` (merged field by field, `redisOptions` too).
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

/** A new Cluster client the caller owns and must close (`closeConnection`). */
export function openCluster (source: RedisClusterSource, name: string): Cluster {
  const user = source.options ?? {}
  return new Cluster(clusterNodes(source), {
    ...user,
    ...SETTINGS,
    redisOptions: { ...user.redisOptions, ...SETTINGS.redisOptions, connectionName: connectionName(name) }
  })
}
