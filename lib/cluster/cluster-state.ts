import type { Directory } from './directory.js'
import type { EvictionHandler, Limiter } from './limiter.js'
import type { Presence } from './presence.js'

/**
 * What one `registry` option builds: a limiter, a directory and presence that share
 * one backend (and so one lease per instance), and the close of whatever
 * that backend opened.
 */
export interface ClusterState {
  limiter: Limiter
  directory: Directory
  /**
   * Presence members, on the same lease as the directory. Left out (a custom
   * registry without it), the hub keeps presence in memory: each instance
   * then lists and counts only its own members.
   */
  presence?: Presence
  /**
   * Whether the backend answers, for health and metrics: 'down' while it is
   * unreachable or hangs, when the limiter refuses handshakes and the
   * directory cannot answer. Left out, the backend is always 'up' (memory).
   */
  state?: () => ClusterStateHealth
  /**
   * For a backend whose slots can be lost while their connections live (a
   * lease that lapsed during a stall): registers who closes the connections
   * that no longer fit once the backend has them counted again. Left out,
   * nothing can be lost (memory).
   */
  onEvict?: (handler: EvictionHandler) => void
  /** Idempotent. Closes only what the backend itself opened. */
  close: () => Promise<void>
}

export type ClusterStateHealth = 'up' | 'down'
