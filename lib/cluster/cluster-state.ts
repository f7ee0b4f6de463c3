import type { Directory } from './directory.js'
import type { EvictionHandler, Limiter } from './limiter.js'

/**
 * What one `registry` option builds: a limiter and a directory that share
 * one backend (and so one lease per instance), and the close of whatever
 * that backend opened.
 */
export interface ClusterState {
  limiter: Limiter
  directory: Directory
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
