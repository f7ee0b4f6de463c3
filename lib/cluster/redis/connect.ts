import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis'
import { OptionsError } from '../../options/hub-options.js'

/** A Redis Cluster: startup nodes (any reachable subset), and ioredis options passed through. */
export interface RedisClusterSource {
  nodes: ReadonlyArray<string | { host: string, port: number }>
  options?: ClusterOptions | undefined
}

/**
 * Where a Redis backend gets its connections: a URL it opens, the user's
 * client it duplicates, or a Redis Cluster it connects to.
 */
export interface RedisSource {
  url?: string | undefined
  client?: Redis | undefined
  cluster?: RedisClusterSource | undefined
}

/** A source that names one Redis (or a Sentinel group): what a connection of one socket needs. */
export type SingleRedisSource = RedisSource & { cluster?: undefined }

/** What `openConnection` opens: one Redis, or a Redis Cluster client when the source is a cluster. */
export type RedisConnection = Redis | Cluster

/** First reconnect delay; it doubles per failed attempt up to the cap. */
export const RECONNECT_BASE_MS = 100
/** Longest wait between reconnect attempts: Redis is back in use at most this long after it is. */
export const RECONNECT_MAX_MS = 2_000
/**
 * A command without a reply after this long is rejected. The watchdog below
 * drops a hung connection sooner, which rejects everything in flight on it;
 * this is the backstop for a connection it does not watch yet (one still
 * sending its ready check after a reconnect).
 */
export const COMMAND_TIMEOUT_MS = 3_000
/** How long each ready connection waits after a PING reply before the next PING. */
export const WATCHDOG_INTERVAL_MS = 1_000
/**
 * A PING without a reply after this long means Redis hangs (a stopped
 * process, a black-holed network): the connection is dropped and reconnects.
 * A live Redis answers PING in well under a millisecond, so this only trips
 * on a stall, or on an event loop blocked for about this long.
 */
export const WATCHDOG_TIMEOUT_MS = 1_000
/**
 * A Redis that stops answering is detected, and every command in flight on
 * the connection rejected, at most this long after it stopped (plus event
 * loop lag): the PING sent just before the stall was answered, the next one
 * goes out an interval later and times out.
 */
export const STALL_DETECTION_MS = WATCHDOG_INTERVAL_MS + WATCHDOG_TIMEOUT_MS
/** How long `close` waits for QUIT and for the socket to end before it drops the connection. */
export const CLOSE_TIMEOUT_MS = 1_000

/** Capped exponential backoff with jitter; never gives up. */
export function reconnectDelay (attempt: number): number {
  const capped = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** Math.min(Math.max(attempt - 1, 0), 16))
  // Instances that lost Redis together should not all knock at the same instant.
  return Math.round(capped * (0.8 + Math.random() * 0.2))
}

/**
 * The settings every connection a backend opens runs with, whatever the
 * user's client was configured with. They are chosen for a hub, where a
 * failed call is counted and logged, and a late or repeated one does harm.
 */
const SETTINGS: Partial<RedisOptions> = {
  // Nothing connects in a constructor; `start`/`join` connect and report failure.
  lazyConnect: true,
  // While Redis is down a command fails at once instead of waiting in an
  // unbounded queue and running minutes later (a stale broadcast, a slot
  // taken for a client long gone).
  enableOfflineQueue: false,
  // With no offline queue this only governs commands in flight when the
  // socket drops. 0 rejects them at that first drop. A larger value combined
  // with autoResendUnfulfilledCommands: false leaves them pending until
  // commandTimeout, because ioredis discards its previous command queue on
  // reconnect without settling it.
  maxRetriesPerRequest: 0,
  // A PUBLISH or a Lua script whose reply was lost may already have run;
  // sending it again could deliver a message twice or take a slot twice.
  autoResendUnfulfilledCommands: false,
  // The broker resubscribes itself, so it can report 'up' only once Redis
  // has confirmed the subscriptions.
  autoResubscribe: false,
  retryStrategy: reconnectDelay,
  commandTimeout: COMMAND_TIMEOUT_MS,
  // Keys and channels are named by the backend's own prefix option; an
  // ioredis keyPrefix on the user's client would prefix some commands'
  // arguments (plain key commands) but not others (Lua ARGV, channels).
  keyPrefix: ''
}

/**
 * How often a cluster client reads the slot map again when nothing failed.
 * With no command re-sent on a failover (see CLUSTER_SETTINGS), this is
 * what finds the promoted replica when no MOVED reply points to it: a
 * shard is back in use at most this long after its failover completed.
 */
export const SLOTS_REFRESH_INTERVAL_MS = 2_000

/**
 * SETTINGS for a Redis Cluster client, for the same reasons; they win over
 * the user's `options` (field by field, `redisOptions` too). ioredis's
 * node connections never reconnect by themselves: a lost node is dropped
 * and found again through the slot map.
 */
const CLUSTER_SETTINGS: ClusterOptions = {
  lazyConnect: true,
  enableOfflineQueue: false,
  keyPrefix: '',
  slotsRefreshInterval: SLOTS_REFRESH_INTERVAL_MS,
  clusterRetryStrategy: (times: number) => reconnectDelay(times),
  // Any value above 0 re-sends a command that failed with "Connection is
  // closed", which is also how a command in flight on a dying master fails:
  // that script may have run, and running it again would take a slot twice.
  // MOVED, ASK, TRYAGAIN and CLUSTERDOWN are still retried (ioredis's
  // defaults, bounded by maxRedirections): Redis answered them without
  // running the command.
  retryDelayOnFailover: 0,
  redisOptions: {
    commandTimeout: COMMAND_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    keyPrefix: ''
  }
}

/** Throws an OptionsError unless exactly one of `url`, `client` and `cluster` is given. */
export function checkSource (source: SingleRedisSource, option: SourceOption): SingleRedisSource
export function checkSource (source: RedisSource, option: SourceOption): RedisSource
export function checkSource (source: RedisSource, option: SourceOption): RedisSource {
  const hasUrl = typeof source.url === 'string' && source.url !== ''
  const hasClient = source.client !== undefined
  const hasCluster = source.cluster !== undefined
  const given = Number(hasUrl) + Number(hasClient) + Number(hasCluster)
  if (given !== 1) {
    const named = [hasCluster && 'cluster', hasUrl && 'url', hasClient && 'client'].filter((name) => name !== false)
    throw new OptionsError(`fastify-ws-hub: option "${option}" of type redis needs exactly one of "url", "client" or "cluster" (got ${named.length === 0 ? 'none' : named.join(' and ')})`)
  }
  if (source.cluster !== undefined) {
    if (source.cluster.nodes.length === 0) throw new OptionsError(`fastify-ws-hub: option "${option}.cluster.nodes" must list at least one node`)
    return { cluster: source.cluster }
  }
  return hasUrl ? { url: source.url } : { client: source.client }
}

type SourceOption = 'broker' | 'registry' | 'history'

/**
 * A new connection the caller owns and must close: opened from the URL, a
 * duplicate of the user's client (same server, credentials, TLS and db;
 * our settings above), so the user's client is never reconfigured or
 * closed, or a new Cluster client on the cluster's nodes.
 */
export function openConnection (source: SingleRedisSource, name: string): Redis
export function openConnection (source: RedisSource, name: string): RedisConnection
export function openConnection (source: RedisSource, name: string): RedisConnection {
  if (source.cluster !== undefined) return openCluster(source.cluster, name)
  const settings: Partial<RedisOptions> = { ...SETTINGS, connectionName: connectionName(name) }
  let client: Redis
  if (source.client !== undefined) client = source.client.duplicate(settings)
  else if (source.url !== undefined) client = new Redis(source.url, settings)
  else throw new OptionsError('fastify-ws-hub: a Redis backend needs "url", "client" or "cluster"')
  watch(client, name)
  return client
}

function openCluster (source: RedisClusterSource, name: string): Cluster {
  const user = source.options ?? {}
  const cluster = new Cluster(clusterNodes(source), {
    ...user,
    ...CLUSTER_SETTINGS,
    redisOptions: { ...user.redisOptions, ...CLUSTER_SETTINGS.redisOptions, connectionName: connectionName(name) }
  })
  watchCluster(cluster, name)
  // With no offline queue, ioredis rejects a command for a master whose
  // connection is still being opened (it connects on first use), so of
  // two commands sent at once to a fresh master the second fails. Every
  // master is connected once the client is ready instead: at start (see
  // `connectConnection`) and after each later refresh of the slot map (a
  // failover's promoted replica). Not before 'ready': the client's own
  // ready check would be the command refused. A failure is the node's
  // 'error', and is retried by the next command or refresh.
  cluster.on('refresh', () => { if (cluster.status === 'ready') connectMasters(cluster).catch(() => {}) })
  return cluster
}

/** A cluster source's startup nodes, as ioredis takes them. */
export function clusterNodes (source: RedisClusterSource): ClusterNode[] {
  return source.nodes.map((node) => typeof node === 'string' ? node : { host: node.host, port: node.port })
}

async function connectMasters (cluster: Cluster): Promise<void> {
  await Promise.all(cluster.nodes('master').map(async (node) => {
    if (node.status === 'wait') await node.connect().catch(() => {})
  }))
}

/**
 * Connects a connection `openConnection` made; for a cluster, resolves once
 * the slot map is read and every master has been tried.
 */
export async function connectConnection (client: RedisConnection): Promise<void> {
  await client.connect()
  if (isCluster(client)) await connectMasters(client)
}

/** Whether a connection is a Cluster client. */
export function isCluster (connection: RedisConnection): connection is Cluster {
  return connection instanceof Cluster
}

/** Raised (as an 'error' event) on a connection the watchdog drops. */
export class RedisStallError extends Error {
  readonly code = 'ERR_REDIS_STALLED'
}

/**
 * PINGs a connection while it is ready, one PING at a time, and drops it
 * when a PING goes unanswered for WATCHDOG_TIMEOUT_MS. A stopped Redis keeps
 * its sockets open, so without this a connection stays 'ready' and commands
 * just wait. Dropping it is what a crash looks like to its owner: 'close'
 * (owners report the outage), every command in flight rejected (no retries,
 * see SETTINGS), status no longer 'ready' (new commands fail at once), and
 * reconnects with backoff until Redis answers again. PING is allowed in
 * subscriber mode, so the subscriber connection is watched too.
 */
function watch (client: Redis, name: string): void {
  let next: NodeJS.Timeout | null = null
  let deadline: NodeJS.Timeout | null = null
  const stop = (): void => {
    if (next !== null) clearTimeout(next)
    if (deadline !== null) clearTimeout(deadline)
    next = null
    deadline = null
  }
  const schedule = (): void => {
    stop()
    // Unref'd: a watchdog must not keep a process alive.
    next = setTimeout(probe, WATCHDOG_INTERVAL_MS).unref()
  }
  const probe = (): void => {
    next = null
    if (client.status !== 'ready') return
    const stream = client.stream
    let answered = false
    const hung = (): void => {
      // Answered after all, or a reconnect already replaced this socket.
      if (answered || client.status !== 'ready' || client.stream !== stream) return
      // Owners keep the last 'error' as the cause they log with the outage;
      // without a listener an 'error' event would throw.
      if (client.listenerCount('error') > 0) {
        client.emit('error', new RedisStallError(`Redis did not answer PING within ${WATCHDOG_TIMEOUT_MS} ms on connection ${name}; dropping it to reconnect`))
      }
      // destroy, not disconnect(true): that ends the socket politely, and a
      // stopped server never finishes the close, so 'close' would wait for it.
      stream.destroy()
    }
    deadline = setTimeout(() => {
      deadline = null
      // After a blocked event loop the timer runs before the socket is read:
      // setImmediate lets the poll phase deliver a reply that is already
      // here, so our own stall is not taken for Redis's.
      setImmediate(hung)
    }, WATCHDOG_TIMEOUT_MS).unref()
    const answer = (): void => {
      answered = true
      // Any reply, even late, proves this socket is served; a reconnect in
      // the meantime restarted the watch on 'ready'. An error reply (say, an
      // ACL without PING) still came from a live server; a dropped
      // connection is handled by 'close' and 'ready'.
      if (client.status === 'ready' && client.stream === stream) schedule()
    }
    client.ping().then(answer, answer)
  }
  client.on('ready', schedule)
  client.on('close', stop)
  client.on('end', stop)
}

/**
 * The watchdog of a Cluster client: every master it is connected to is
 * PINGed as one connection is above, and a master without a reply after
 * WATCHDOG_TIMEOUT_MS is a stall. Its connection is dropped: every command
 * in flight on it rejects, and ioredis drops the node and finds the
 * master of its slots again (the same node when it answers again, or the
 * replica promoted in its place) at the next slot map refresh.
 */
function watchCluster (cluster: Cluster, name: string): void {
  let timer: NodeJS.Timeout | null = null
  const probing = new WeakSet<Redis>()
  const probe = (node: Redis): void => {
    const stream = node.stream
    probing.add(node)
    let answered = false
    const hung = (): void => {
      probing.delete(node)
      if (answered || node.status !== 'ready' || node.stream !== stream) return
      if (cluster.listenerCount('error') > 0) {
        cluster.emit('error', new RedisStallError(`Redis Cluster master ${node.options.host ?? '?'}:${node.options.port ?? '?'} did not answer PING within ${WATCHDOG_TIMEOUT_MS} ms on connection ${name}; dropping it`))
      }
      stream.destroy()
    }
    const deadline = setTimeout(() => { setImmediate(hung) }, WATCHDOG_TIMEOUT_MS).unref()
    const answer = (): void => {
      answered = true
      clearTimeout(deadline)
      probing.delete(node)
    }
    node.ping().then(answer, answer)
  }
  const tick = (): void => {
    if (cluster.status !== 'ready') return
    for (const node of cluster.nodes('master')) {
      if (node.status === 'ready' && !probing.has(node)) probe(node)
    }
  }
  const start = (): void => {
    // One PING per master at a time, WATCHDOG_INTERVAL_MS apart at most.
    timer ??= setInterval(tick, WATCHDOG_INTERVAL_MS).unref()
  }
  const stop = (): void => {
    if (timer !== null) clearInterval(timer)
    timer = null
  }
  cluster.on('ready', start)
  cluster.on('end', stop)
}

/** Where a source points, for error messages; never includes a password. */
export function describeSource (source: RedisSource): string {
  if (source.cluster !== undefined) {
    const nodes = source.cluster.nodes.map((node) => typeof node === 'string' ? node : `${node.host}:${node.port}`)
    return `the Redis Cluster at ${nodes.join(', ')}`
  }
  if (source.url !== undefined) {
    try {
      const url = new URL(source.url)
      return `${url.protocol}//${url.host}${url.pathname === '/' ? '' : url.pathname}`
    } catch {
      return 'an unparsable Redis URL'
    }
  }
  const options = source.client?.options
  if (options === undefined) return 'an unknown Redis'
  if (options.sentinels !== undefined && options.sentinels !== null) return `the given client's Sentinel group ${options.name ?? '?'}`
  return `the given client's server (${options.host ?? 'localhost'}:${options.port ?? 6379})`
}

// CLIENT SETNAME refuses spaces and control characters; the name is only for
// operators reading CLIENT LIST.
export function connectionName (name: string): string {
  return name.replace(/[^\x21-\x7e]/g, '_').slice(0, 200)
}

/**
 * Closes a connection this process opened, politely when possible: QUIT lets
 * replies already on the wire arrive first. Bounded, so a dead server can
 * never hang shutdown. Never rejects: at shutdown a failed QUIT is handled
 * by dropping the socket, which is what it would have done anyway.
 */
export async function closeConnection (client: RedisConnection): Promise<void> {
  if (client.status === 'end') return
  // Only a live or connecting socket emits 'end' once dropped; one that is
  // waiting to reconnect just stops retrying. A Cluster client ends once
  // disconnected from any state but its first.
  const willEnd = client.status === 'ready' || client.status === 'connect' || client.status === 'connecting' ||
    (isCluster(client) && client.status !== 'wait')
  const ended = willEnd ? new Promise<void>((resolve) => client.once('end', () => resolve())) : Promise.resolve()
  if (client.status === 'ready') {
    await withTimeout(client.quit().then(() => undefined, () => undefined), CLOSE_TIMEOUT_MS)
  }
  client.disconnect()
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
