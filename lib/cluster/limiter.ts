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

/**
 * Connections an instance holds beyond the limits, after slots it held
 * were lost and taken by others (a Redis lease that lapsed while the
 * instance or Redis stalled): how many of its connections must close, per
 * IP, per user, and in all. Every connection holds a total slot, so closing
 * one for its IP or user also counts against `total`.
 */
export interface Eviction {
  ips: ReadonlyMap<string, number>
  users: ReadonlyMap<string, number>
  total: number
}

export type EvictionHandler = (eviction: Eviction) => void

/**
 * The connections to close for an eviction, taken in the order given (the
 * hub passes its newest first). First those over their IP's or user's
 * limit, each counting against every excess it clears; then, while the
 * total is still over, any. So no more close than the excesses need.
 */
export function pickEvicted<T extends { ip: string, userId: string | null }> (eviction: Eviction, candidates: Iterable<T>): T[] {
  const ips = new Map(eviction.ips)
  const users = new Map(eviction.users)
  let total = eviction.total
  const picked: T[] = []
  const rest: T[] = []
  const take = (counts: Map<string, number>, key: string | null): void => {
    if (key !== null && (counts.get(key) ?? 0) > 0) counts.set(key, (counts.get(key) ?? 0) - 1)
  }
  for (const candidate of candidates) {
    const overIp = (ips.get(candidate.ip) ?? 0) > 0
    const overUser = candidate.userId !== null && (users.get(candidate.userId) ?? 0) > 0
    if (!overIp && !overUser) {
      rest.push(candidate)
      continue
    }
    take(ips, candidate.ip)
    take(users, candidate.userId)
    total--
    picked.push(candidate)
  }
  for (const candidate of rest) {
    if (total <= 0) break
    total--
    picked.push(candidate)
  }
  return picked
}
