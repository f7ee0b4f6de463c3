import type { WebSocket } from 'ws'
import type { Identity } from '../options/hooks.js'

import type { ConnectionInfo } from '../cluster/directory.js'

export type { ConnectionInfo }

/**
 * One live socket. Kept deliberately small: a hub holds tens of thousands,
 * so per-connection state is plain fields, not closures.
 */
export class Connection {
  readonly id: string
  readonly ip: string
  readonly userId: string | null
  /** What `authenticate` returned, kept for `revalidate`; null when anonymous. */
  readonly identity: Identity | null
  readonly socket: WebSocket
  readonly connectedAt: number
  readonly topics = new Set<string>()
  /** Cleared when a heartbeat ping goes out, set again by the pong. */
  alive = true
  /** Set once the hub has started closing it, so nothing more is written. */
  closing = false
  /** Token bucket of the message rate limit. */
  tokens = 0
  refilledAt = 0
  /** Messages refused in a row by the rate limit. */
  refusedInARow = 0
  /** Frames waiting for the next batch; null for a client that did not opt in. */
  batch: Buffer[] | null = null
  batchBytes = 0

  constructor (id: string, ip: string, identity: Identity | null, socket: WebSocket, connectedAt = Date.now()) {
    this.id = id
    this.ip = ip
    this.identity = identity
    this.userId = identity?.userId ?? null
    this.socket = socket
    this.connectedAt = connectedAt
  }

  info (instanceId: string): ConnectionInfo {
    return {
      id: this.id,
      ip: this.ip,
      userId: this.userId,
      topics: [...this.topics],
      connectedAt: new Date(this.connectedAt).toISOString(),
      instanceId
    }
  }
}
