export interface SlotLimits {
  perIp: number
  total: number
}

export type ReserveResult =
  | { ok: true }
  | { ok: false, reason: 'ip_limit' | 'total_limit' }

/**
 * Connection slots, counted across every instance that shares the backend.
 *
 * `reserve` and `reserveUser` are atomic: concurrent calls from any number
 * of instances never take more slots than the limits allow. Every
 * successful reservation is matched by exactly one release (the hub
 * guarantees that), so counts never go negative.
 *
 * Leases: the slots an instance holds are tied to its lease in the
 * directory (`join`). An instance that dies without leaving frees them
 * when its lease lapses, so a crash cannot hold slots forever.
 */
export interface Limiter {
  /** Takes one per-IP and one total slot, or neither. */
  reserve: (ip: string, limits: SlotLimits) => Promise<ReserveResult>
  release: (ip: string) => Promise<void>
  /** Takes one of the user's `max` slots; false when the user holds `max` already. */
  reserveUser: (userId: string, max: number) => Promise<boolean>
  releaseUser: (userId: string) => Promise<void>
  /** Slots held by an IP (live connections and handshakes in progress). */
  ipCount: (ip: string) => Promise<number>
  userCount: (userId: string) => Promise<number>
  totalCount: () => Promise<number>
}
