import { Redis, type RedisOptions } from 'ioredis'
import { COMMAND_TIMEOUT_MS, reconnectDelay, type RedisSource } from '../../cluster/redis/connect.js'
import { SourceError } from '../../errors.js'

/**
 * The connection a blocking XREADGROUP holds. It has the settings of
 * `openConnection` (no offline queue, nothing resent, the user's keyPrefix
 * dropped), but no PING watchdog: a PING queued behind a BLOCK waits for
 * it, so the watchdog would take every quiet stream for a hung server. The
 * read's own timeout, a BLOCK plus the usual command timeout, is what
 * tells a hung server here; the source then drops the socket.
 */
export function openReader (source: RedisSource, name: string, blockMs: number): Redis {
  const settings: Partial<RedisOptions> = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // A read whose reply was lost already moved its entries to this
    // consumer's pending list; they are read from there, never by a resend.
    autoResendUnfulfilledCommands: false,
    retryStrategy: reconnectDelay,
    commandTimeout: blockMs + COMMAND_TIMEOUT_MS,
    keyPrefix: '',
    // CLIENT SETNAME refuses spaces and control characters.
    connectionName: name.replace(/[^\x21-\x7e]/g, '_').slice(0, 200)
  }
  if (source.client !== undefined) return source.client.duplicate(settings)
  if (source.url !== undefined) return new Redis(source.url, settings)
  throw new SourceError('a redis-stream source needs "url" or "client"')
}

/**
 * Resolves once the connection is ready, or at once when `signal` aborts.
 * A connection never connected is connected now; ioredis reconnects by
 * itself after that (a failed first connect included).
 */
export async function whenReady (client: Redis, signal: AbortSignal): Promise<void> {
  if (client.status === 'ready' || signal.aborted) return
  // The failure is seen as the connection not becoming ready; the owner's 'error' listener keeps it.
  if (client.status === 'wait') client.connect().catch(() => {})
  await new Promise<void>((resolve) => {
    const done = (): void => {
      client.off('ready', done)
      signal.removeEventListener('abort', done)
      resolve()
    }
    client.on('ready', done)
    signal.addEventListener('abort', done, { once: true })
  })
}
