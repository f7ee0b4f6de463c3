import type { Redis } from 'ioredis'
import { SourceError } from '../../errors.js'
import { parseClaim, parseGroupLag } from './replies.js'

/** The consumer group's commands, run on the source's command connection (never the blocking one). */

/**
 * Creates the group on each stream (and the stream, MKSTREAM, so a source
 * may start before its producer). `latest` starts a new group at the end
 * (`$`), `earliest` at the beginning (`0`). A group that exists keeps its
 * position: BUSYGROUP is what every instance but the first gets.
 */
export async function createGroups (client: Redis, streams: readonly string[], group: string, from: 'latest' | 'earliest'): Promise<void> {
  const start = from === 'latest' ? '$' : '0'
  await Promise.all(streams.map(async (stream) => {
    try {
      await client.xgroup('CREATE', stream, group, start, 'MKSTREAM')
    } catch (err) {
      if (err instanceof Error && err.message.startsWith('BUSYGROUP')) return
      throw new SourceError(`could not create consumer group ${group} on stream ${stream}`, { cause: err })
    }
  }))
}

/** Whether a read failed because the group (or its stream) is gone: it is created again. */
export function isNoGroup (err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOGROUP')
}

/** XACK of these ids, one command per stream in one round trip. */
export async function acknowledge (client: Redis, group: string, ids: ReadonlyMap<string, readonly string[]>): Promise<void> {
  if (ids.size === 0) return
  const pipeline = client.pipeline()
  for (const [stream, list] of ids) pipeline.xack(stream, group, ...list)
  const results = await pipeline.exec()
  const failed = results?.find(([err]) => err !== null)
  if (results === null || failed !== undefined) {
    throw new SourceError(`could not acknowledge entries of group ${group}; they stay pending and are read again`, { cause: failed?.[0] ?? undefined })
  }
}

/**
 * Moves entries other consumers read and left unacknowledged for
 * `minIdleMs` into `consumer`'s pending list (JUSTID: ids only; the reader
 * reads them from its pending list, in id order, like its own). Stops after
 * about `limit` ids, keeping the cursor for the next round, so one round
 * never takes more than the consumer can deliver soon. Returns the cursor
 * to start from next and how many were claimed.
 */
export async function claim (client: Redis, stream: string, group: string, consumer: string, minIdleMs: number, cursor: string, limit: number): Promise<{ cursor: string, claimed: number }> {
  let claimed = 0
  let next = cursor
  do {
    const reply = parseClaim(await client.call('XAUTOCLAIM', stream, group, consumer, minIdleMs, next, 'COUNT', limit, 'JUSTID'))
    claimed += reply.claimed
    next = reply.cursor
  } while (next !== '0-0' && claimed < limit)
  return { cursor: next, claimed }
}

/** Entries waiting for the group on these streams, summed; null when any stream cannot tell. */
export async function groupLag (client: Redis, streams: readonly string[], group: string): Promise<number | null> {
  const lags = await Promise.all(streams.map(async (stream) => parseGroupLag(await client.call('XINFO', 'GROUPS', stream), group)))
  let sum = 0
  for (const lag of lags) {
    if (lag === null) return null
    sum += lag
  }
  return sum
}

/**
 * KEYS: stream. ARGV: group, this consumer, idle ms. Deletes the group's
 * consumers, other than this one, that have nothing pending and have been
 * idle longer than that. A script, so nothing can be read by a consumer
 * between the check and the delete: DELCONSUMER drops a consumer's pending
 * entries, and they would be lost. Deleting a live consumer that merely
 * idles is harmless: its next read creates it again. Returns how many went.
 */
const REAP = `
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
local idle_ms = tonumber(ARGV[3])
local removed = 0
for i = 1, #consumers do
  local c = {}
  local flat = consumers[i]
  for j = 1, #flat, 2 do c[flat[j]] = flat[j + 1] end
  if c.name ~= ARGV[2] and c.pending == 0 and c.idle > idle_ms then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], c.name)
    removed = removed + 1
  end
end
return removed
`

const REAP_COMMAND = 'wsHubReapStreamConsumers'

/** Defines the reap script on a connection (ioredis sends it by SHA1, the source only when Redis lacks it). */
export function defineGroupScripts (client: Redis): void {
  client.defineCommand(REAP_COMMAND, { numberOfKeys: 1, lua: REAP })
}

export async function reapConsumers (client: Redis, stream: string, group: string, consumer: string, idleMs: number): Promise<number> {
  // Commands made by defineCommand exist only at run time, so ioredis' types do not list them.
  const command: unknown = Reflect.get(client, REAP_COMMAND)
  if (typeof command !== 'function') throw new SourceError(`Redis script ${REAP_COMMAND} is not defined on this connection`)
  const reply: unknown = await command.call(client, stream, group, consumer, idleMs)
  return typeof reply === 'number' ? reply : 0
}
