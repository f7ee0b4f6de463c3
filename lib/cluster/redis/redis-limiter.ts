import type { Limiter, ReserveResult, SlotLimits } from '../limiter.js'
import { ClusterStateError } from '../../errors.js'
import { takeOne, type RedisSession } from './redis-session.js'
import { describeDetail } from './replies.js'
import { LEASE_LOST, RELEASE, RELEASE_USER, RESERVE, RESERVE_USER, type Script } from './scripts.js'

/**
 * Connection slots in Redis, counted per instance under that instance's
 * lease (see `RedisSession`). Every reservation is one Lua script, so
 * concurrent reservations from any number of processes never exceed the
 * limits; each first reaps expired instances, so a crashed instance's slots
 * are free for the next reservation once its lease has run out. An
 * instance whose lease lapsed while it lived is fenced when it comes back
 * (see `RedisSession`): what no longer fits goes to `onEvict`.
 */
export class RedisLimiter implements Limiter {
  readonly #session: RedisSession

  constructor (session: RedisSession) {
    this.#session = session
  }

  async reserve (ip: string, limits: SlotLimits): Promise<ReserveResult> {
    // Kept for a restore after a lapsed lease, which checks against them.
    this.#session.limits.perIp = limits.perIp
    this.#session.limits.total = limits.total
    const code = await this.#reserve('RedisLimiter.reserve', RESERVE, this.#session.local.ips, ip, [limits.perIp, limits.total], { ip })
    if (code === 0) return { ok: true }
    if (code === 1) return { ok: false, reason: 'ip_limit' }
    if (code === 2) return { ok: false, reason: 'total_limit' }
    throw new ClusterStateError(`RedisLimiter.reserve: unexpected reply ${code} from Redis`)
  }

  async release (ip: string): Promise<void> {
    await this.#release('RedisLimiter.release', RELEASE, this.#session.local.ips, ip, { ip })
  }

  async reserveUser (userId: string, max: number): Promise<boolean> {
    this.#session.limits.perUser = max
    const code = await this.#reserve('RedisLimiter.reserveUser', RESERVE_USER, this.#session.local.users, userId, [max], { userId })
    if (code === 0) return true
    if (code === 1) return false
    throw new ClusterStateError(`RedisLimiter.reserveUser: unexpected reply ${code} from Redis`)
  }

  async releaseUser (userId: string): Promise<void> {
    await this.#release('RedisLimiter.releaseUser', RELEASE_USER, this.#session.local.users, userId, { userId })
  }

  async ipCount (ip: string): Promise<number> {
    const { ips } = this.#session.keys
    return await this.#session.read('RedisLimiter.ipCount', { ip }, async (client) => Number(await client.hget(ips, ip) ?? 0))
  }

  async userCount (userId: string): Promise<number> {
    const { users } = this.#session.keys
    return await this.#session.read('RedisLimiter.userCount', { userId }, async (client) => Number(await client.hget(users, userId) ?? 0))
  }

  async totalCount (): Promise<number> {
    const { total } = this.#session.keys
    return await this.#session.read('RedisLimiter.totalCount', {}, async (client) => Number(await client.get(total) ?? 0))
  }

  /** Runs a reservation script; 0 means taken, and is counted locally before anything else can look. */
  async #reserve (op: string, script: Script, held: Map<string, number>, key: string, limits: number[], detail: Record<string, unknown>): Promise<number> {
    const session = this.#session
    const id = session.member(op)
    for (let attempt = 0; attempt < 2; attempt++) {
      const code = await session.write(op, script, [id, key, ...limits], detail, {
        before: () => { session.member(op) },
        after: (code) => { if (code === 0) held.set(key, (held.get(key) ?? 0) + 1) }
      })
      if (code !== LEASE_LOST) return code
      // Our lease lapsed and our state was reaped: restore it, then count
      // this reservation against the restored state.
      await session.repair()
    }
    throw new ClusterStateError(`${op}: instance ${id} has no lease in Redis even after restoring it${describeDetail(detail)}`)
  }

  async #release (op: string, script: Script, held: Map<string, number>, key: string, detail: Record<string, unknown>): Promise<void> {
    const id = this.#session.active
    if (id === null) return
    let changed = false
    await this.#session.run(op, script, [id, key], detail, {
      // Counted here before sending: if Redis does not answer, the repair
      // frees the slot there too.
      before: () => { changed = takeOne(held, key) }
    }, () => changed)
  }
}
