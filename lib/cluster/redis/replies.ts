import type { FastifyBaseLogger } from 'fastify'
import type { ConnectionInfo } from '../../connections/connection.js'

/** Reading what the registry's scripts and keys hand back, and describing failures. */
export class RegistryError extends Error {
  override name = 'RegistryError'
}

/** A script's numeric reply code. */
export function toCode (reply: unknown): number {
  if (typeof reply !== 'number') throw new RegistryError(`unexpected reply from Redis: ${JSON.stringify(reply)}`)
  return reply
}

export function describeDetail (detail: Record<string, unknown>): string {
  const parts = Object.entries(detail).map(([key, value]) => `${key} ${String(value)}`)
  return parts.length === 0 ? '' : ` (${parts.join(', ')})`
}

/** A stored connection entry, or null (logged) when it is unreadable or malformed. */
export function parseConnectionEntry (json: string, log: FastifyBaseLogger, clientId: string | undefined): ConnectionInfo | null {
  let value: unknown
  try {
    value = JSON.parse(json)
  } catch (err) {
    log.error({ err, clientId }, 'ws-hub: unreadable connection entry in the Redis registry skipped')
    return null
  }
  if (!isConnectionInfo(value)) {
    log.error({ clientId, entry: json.slice(0, 200) }, 'ws-hub: malformed connection entry in the Redis registry skipped')
    return null
  }
  return value
}

function isConnectionInfo (value: unknown): value is ConnectionInfo {
  if (value === null || typeof value !== 'object') return false
  const v = value as Record<string, unknown>
  return typeof v.id === 'string' && typeof v.ip === 'string' && typeof v.instanceId === 'string' &&
    typeof v.connectedAt === 'string' && (v.userId === null || typeof v.userId === 'string') &&
    Array.isArray(v.topics) && v.topics.every((topic) => typeof topic === 'string')
}
