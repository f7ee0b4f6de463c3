import type { Limiter, ReserveResult, SlotLimits } from '../limiter.js'

/**
 * One process's slots. Every method checks and changes its counts before
 * its first await, so each is atomic on Node's single thread. A count that
 * reaches zero is deleted, so the maps hold only IPs and users with slots.
 * There are no leases: one process cannot outlive its own memory.
 */
export class MemoryLimiter implements Limiter {
  readonly #ips = new Map<string, number>()
  readonly #users = new Map<string, number>()
  #total = 0

  async reserve (ip: string, limits: SlotLimits): Promise<ReserveResult> {
    const held = this.#ips.get(ip) ?? 0
    if (held >= limits.perIp) return { ok: false, reason: 'ip_limit' }
    if (this.#total >= limits.total) return { ok: false, reason: 'total_limit' }
    this.#ips.set(ip, held + 1)
    this.#total++
    return { ok: true }
  }

  async release (ip: string): Promise<void> {
    if (takeOne(this.#ips, ip)) this.#total--
  }

  async reserveUser (userId: string, max: number): Promise<boolean> {
    const held = this.#users.get(userId) ?? 0
    if (held >= max) return false
    this.#users.set(userId, held + 1)
    return true
  }

  async releaseUser (userId: string): Promise<void> {
    takeOne(this.#users, userId)
  }

  async ipCount (ip: string): Promise<number> {
    return this.#ips.get(ip) ?? 0
  }

  async userCount (userId: string): Promise<number> {
    return this.#users.get(userId) ?? 0
  }

  async totalCount (): Promise<number> {
    return this.#total
  }
}

/** Takes one from a count, deleting the key at zero; false when none was held. */
function takeOne (counts: Map<string, number>, key: string): boolean {
  const held = counts.get(key)
  if (held === undefined) return false
  if (held <= 1) counts.delete(key)
  else counts.set(key, held - 1)
  return true
}
