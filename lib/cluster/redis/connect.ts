import { Redis, type RedisOptions } from 'ioredis'
import { OptionsError } from '../../options/hub-options.js'

/** Where a Redis backend gets its connections: a URL it opens, or the user's client it duplicates. */
export interface RedisSource {
  url?: string | undefined
  client?: Redis | undefined
}

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

/** Throws an OptionsError unless exactly one of `url` and `client` is given. */
export function checkSource (source: RedisSource, option: 'broker' | 'registry' | 'history'): RedisSource {
  const hasUrl = typeof source.url === 'string' && source.url !== ''
  const hasClient = source.client !== undefined
  if (hasUrl === hasClient) {
    throw new OptionsError(`fastify-ws-hub: option "${option}" of type redis needs exactly one of "url" or "client" (got ${hasUrl ? 'both' : 'neither'})`)
  }
  return hasUrl ? { url: source.url } : { client: source.client }
}

/**
 * A new connection the caller owns and must close: opened from the URL, or
 * a duplicate of the user's client (same server, credentials, TLS and db;
 * our settings above), so the user's client is never reconfigured or closed.
 */
export function openConnection (source: RedisSource, name: string): Redis {
  const settings: Partial<RedisOptions> = { ...SETTINGS, connectionName: connectionName(name) }
  let client: Redis
  if (source.client !== undefined) client = source.client.duplicate(settings)
  else if (source.url !== undefined) client = new Redis(source.url, settings)
  else throw new OptionsError('fastify-ws-hub: a Redis backend needs "url" or "client"')
  watch(client, name)
  return client
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

/** Where a source points, for error messages; never includes a password. */
export function describeSource (source: RedisSource): string {
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
function connectionName (name: string): string {
  return name.replace(/[^\x21-\x7e]/g, '_').slice(0, 200)
}

/**
 * Closes a connection this process opened, politely when possible: QUIT lets
 * replies already on the wire arrive first. Bounded, so a dead server can
 * never hang shutdown. Never rejects: at shutdown a failed QUIT is handled
 * by dropping the socket, which is what it would have done anyway.
 */
export async function closeConnection (client: Redis): Promise<void> {
  if (client.status === 'end') return
  // Only a live or connecting socket emits 'end' once dropped; one that is
  // waiting to reconnect just stops retrying.
  const willEnd = client.status === 'ready' || client.status === 'connect' || client.status === 'connecting'
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
