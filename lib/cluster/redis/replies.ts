import type { FastifyBaseLogger } from 'fastify'
import type { DirectoryEntry } from '../directory.js'
import type { Eviction } from '../limiter.js'
import { ClusterStateError } from '../../errors.js'

/** Reading what the cluster state's scripts and keys hand back, and describing failures. */

/** A script's numeric reply code. */
export function toCode (reply: unknown): number {
  if (typeof reply !== 'number') throw new ClusterStateError(`unexpected reply from Redis: ${JSON.stringify(reply)}`)
  return reply
}

export function describeDetail (detail: Record<string, unknown>): string {
  const parts = Object.entries(detail).map(([key, value]) => `${key} ${String(value)}`)
  return parts.length === 0 ? '' : ` (${parts.join(', ')})`
}

/** A stored directory entry, or null (logged) when it is unreadable or malformed. */
export function parseEntry (json: string, log: FastifyBaseLogger, clientId: string | undefined): DirectoryEntry | null {
  let value: unknown
  try {
    value = JSON.parse(json)
  } catch (err) {
    log.error({ err, clientId }, 'ws-hub: unreadable connection entry in the Redis directory skipped')
    return null
  }
  if (!isEntry(value)) {
    log.error({ clientId, entry: json.slice(0, 200) }, 'ws-hub: malformed connection entry in the Redis directory skipped')
    return null
  }
  // Only the entry's own fields: a newer writer's extra fields stay in Redis.
  return { id: value.id, ip: value.ip, userId: value.userId, connectedAt: value.connectedAt, instanceId: value.instanceId }
}

function isEntry (value: unknown): value is DirectoryEntry {
  if (value === null || typeof value !== 'object') return false
  const v = value as Record<string, unknown>
  return typeof v.id === 'string' && typeof v.ip === 'string' && typeof v.instanceId === 'string' &&
    typeof v.connectedAt === 'string' && (v.userId === null || typeof v.userId === 'string')
}

/** The SYNC script's reply: what of the restored state goes over the limits. */
export function parseEviction (reply: unknown): Eviction {
  if (typeof reply !== 'string') throw new ClusterStateError(`unexpected reply from Redis to a restore: ${JSON.stringify(reply)}`)
  let value: unknown
  try {
    value = JSON.parse(reply)
  } catch (err) {
    throw new ClusterStateError(`unreadable reply from Redis to a restore: ${reply.slice(0, 200)}`, { cause: err })
  }
  const v = (value ?? {}) as Record<string, unknown>
  return { ips: counts(v.ips), users: counts(v.users), total: typeof v.total === 'number' ? v.total : 0 }
}

// Lua's cjson writes an empty table as {} or [], so anything but positive numbers is skipped.
function counts (value: unknown): Map<string, number> {
  const out = new Map<string, number>()
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return out
  for (const [key, n] of Object.entries(value)) if (typeof n === 'number' && n > 0) out.set(key, n)
  return out
}
