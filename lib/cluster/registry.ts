import type { ConnectionInfo } from '../connections/connection.js'

export interface Limits {
  perIp: number
  total: number
}

export type ReserveResult =
  | { ok: true }
  | { ok: false, reason: 'ip_limit' | 'total_limit' }

export interface Page {
  limit: number
  offset: number
}

export interface ConnectionPage {
  count: number
  connections: ConnectionInfo[]
}

/**
 * Cluster state: connection slots for the limits, and which instance holds
 * which client and user. The memory registry knows one process; the Redis
 * registry knows every instance that shares it.
 *
 * `reserve` is atomic: concurrent calls can never take more slots than the
 * limits allow. Every successful `reserve` is matched by exactly one
 * `release` (the hub guarantees that), so counts never go negative.
 */
export interface Registry {
  reserve: (ip: string, limits: Limits) => Promise<ReserveResult>
  release: (ip: string) => Promise<void>
  /** Slots held by an IP (live connections and handshakes in progress). */
  ipCount: (ip: string) => Promise<number>
  totalCount: () => Promise<number>
  add: (info: ConnectionInfo) => Promise<void>
  update: (info: ConnectionInfo) => Promise<void>
  remove: (id: string) => Promise<void>
  /** The instance holding a client, or null when no instance does. */
  locate: (clientId: string) => Promise<string | null>
  /** The instances holding at least one connection of a user. */
  locateUser: (userId: string) => Promise<string[]>
  list: (page: Page) => Promise<ConnectionPage>
  /**
   * Announces the hub instance this registry acts for; it stays listed until
   * `leave`, or until its lease lapses (a crashed instance). `join` comes
   * first: reserve, release, add, update and remove act for that instance.
   */
  join: (instanceId: string) => Promise<void>
  leave: (instanceId: string) => Promise<void>
  /** Hub instances currently alive. */
  instances: () => Promise<string[]>
  close: () => Promise<void>
}
