/**
 * The contract every Limiter backend must pass. A backend's test file calls
 * `limiterSuite` with a factory; nothing here knows which backend it runs.
 */
import type { Eviction } from '../cluster/limiter.js'
import type { TapLike } from './tap-like.js'
import { eventually, type ClusterStateFactory } from './cluster-state-factory.js'

export type { ClusterStateFactory } from './cluster-state-factory.js'

export function limiterSuite (t: TapLike, name: string, factory: ClusterStateFactory): void {
  t.test(`${name}: reserve is atomic under concurrency and honours both limits`, async (t) => {
    const { limiter } = await (await factory.cluster(t))('i1')
    const results = await Promise.all(Array.from({ length: 50 }, async () => limiter.reserve('1.2.3.4', { perIp: 7, total: 100 })))
    t.equal(results.filter((r) => r.ok).length, 7, 'exactly the per-IP limit succeed')
    t.same(results.find((r) => !r.ok), { ok: false, reason: 'ip_limit' })
    t.equal(await limiter.ipCount('1.2.3.4'), 7)
    const others = await Promise.all(Array.from({ length: 10 }, async (_, n) => limiter.reserve(`5.5.5.${n}`, { perIp: 7, total: 10 })))
    t.equal(others.filter((r) => r.ok).length, 3, 'the total limit caps the rest')
    t.same(others.find((r) => !r.ok), { ok: false, reason: 'total_limit' })
    t.equal(await limiter.totalCount(), 10)
  })

  t.test(`${name}: release returns slots and never goes negative`, async (t) => {
    const { limiter } = await (await factory.cluster(t))('i1')
    await limiter.reserve('1.1.1.1', { perIp: 5, total: 5 })
    await limiter.reserve('1.1.1.1', { perIp: 5, total: 5 })
    await limiter.release('1.1.1.1')
    t.equal(await limiter.ipCount('1.1.1.1'), 1)
    await limiter.release('1.1.1.1')
    await limiter.release('1.1.1.1')
    await limiter.release('9.9.9.9')
    t.equal(await limiter.ipCount('1.1.1.1'), 0)
    t.equal(await limiter.ipCount('9.9.9.9'), 0)
    t.equal(await limiter.totalCount(), 0)
    t.same(await limiter.reserve('1.1.1.1', { perIp: 1, total: 1 }), { ok: true }, 'the next reservation counts from zero')
    t.equal(await limiter.totalCount(), 1)
  })

  t.test(`${name}: limits hold across instances of one cluster`, async (t) => {
    const join = await factory.cluster(t)
    const a = (await join('ia')).limiter
    const b = (await join('ib')).limiter
    const limits = { perIp: 3, total: 100 }
    const results = await Promise.all([
      ...Array.from({ length: 5 }, async () => a.reserve('7.7.7.7', limits)),
      ...Array.from({ length: 5 }, async () => b.reserve('7.7.7.7', limits))
    ])
    t.equal(results.filter((r) => r.ok).length, 3)
    t.equal(await a.ipCount('7.7.7.7'), 3)
    t.equal(await b.ipCount('7.7.7.7'), 3)
    t.equal(await b.totalCount(), 3)
  })

  t.test(`${name}: reserveUser is atomic under concurrency`, async (t) => {
    const { limiter } = await (await factory.cluster(t))('i1')
    const results = await Promise.all(Array.from({ length: 50 }, async () => limiter.reserveUser('alice', 7)))
    t.equal(results.filter((ok) => ok).length, 7, 'exactly max succeed')
    t.equal(await limiter.userCount('alice'), 7)
    t.equal(await limiter.userCount('bob'), 0)
    t.equal(await limiter.reserveUser('bob', 7), true, 'each user has their own slots')
    t.equal(await limiter.totalCount(), 0, 'user slots are not connection slots')
  })

  t.test(`${name}: reserveUser holds its limit across instances`, async (t) => {
    const join = await factory.cluster(t)
    const a = (await join('ia')).limiter
    const b = (await join('ib')).limiter
    const results = await Promise.all([
      ...Array.from({ length: 10 }, async () => a.reserveUser('alice', 3)),
      ...Array.from({ length: 10 }, async () => b.reserveUser('alice', 3))
    ])
    t.equal(results.filter((ok) => ok).length, 3)
    t.equal(await a.userCount('alice'), 3)
    t.equal(await b.userCount('alice'), 3)
  })

  t.test(`${name}: releaseUser returns slots and never goes negative`, async (t) => {
    const { limiter } = await (await factory.cluster(t))('i1')
    t.equal(await limiter.reserveUser('alice', 2), true)
    t.equal(await limiter.reserveUser('alice', 2), true)
    t.equal(await limiter.reserveUser('alice', 2), false)
    await limiter.releaseUser('alice')
    t.equal(await limiter.userCount('alice'), 1)
    await limiter.releaseUser('alice')
    await limiter.releaseUser('alice')
    await limiter.releaseUser('nobody')
    t.equal(await limiter.userCount('alice'), 0)
    t.equal(await limiter.userCount('nobody'), 0)
    t.equal(await limiter.reserveUser('alice', 1), true, 'the next reservation counts from zero')
    t.equal(await limiter.reserveUser('alice', 1), false)
  })

  const lapse = factory.lapse
  if (lapse !== undefined) {
    t.test(`${name}: an instance whose lease lapsed is fenced when it returns: what no longer fits is reported, and nothing more is admitted`, async (t) => {
      const join = await factory.cluster(t)
      const stalled = await join('stalled')
      const evictions: Eviction[] = []
      t.equal(typeof stalled.onEvict, 'function', 'a backend with leases reports what must close')
      stalled.onEvict?.((eviction) => evictions.push(eviction))
      const limits = { perIp: 3, total: 5 }
      for (const ip of ['1.1.1.1', '1.1.1.1', '1.1.1.1', '2.2.2.2']) t.same(await stalled.limiter.reserve(ip, limits), { ok: true })
      t.equal(await stalled.limiter.reserveUser('alice', 2), true)
      t.equal(await stalled.limiter.reserveUser('alice', 2), true)

      await lapse(stalled, 'stalled')
      const other = (await join('other')).limiter
      for (let n = 0; n < 3; n++) t.same(await other.reserve('1.1.1.1', limits), { ok: true }, 'the lapsed slots are taken by another instance')
      t.equal(await other.reserveUser('alice', 2), true)
      t.equal(await other.reserveUser('alice', 2), true)

      // Back: its first write finds the lease lost and restores it, checked against the limits.
      t.same(await stalled.limiter.reserve('3.3.3.3', limits), { ok: false, reason: 'total_limit' }, 'nothing is admitted on the stale state')
      t.same(evictions.map((e) => ({ ips: Object.fromEntries(e.ips), users: Object.fromEntries(e.users), total: e.total })),
        [{ ips: { '1.1.1.1': 3 }, users: { alice: 2 }, total: 2 }], 'one eviction: every excess of the restored slots')
      t.equal(await other.ipCount('1.1.1.1'), 6, 'counted over the limit until the evicted connections close')
      t.same(await other.reserve('1.1.1.1', limits), { ok: false, reason: 'ip_limit' })
      t.equal(await other.reserveUser('alice', 2), false)

      // The hub closes them; their releases bring the counts back within the limits.
      for (let n = 0; n < 3; n++) await stalled.limiter.release('1.1.1.1')
      await stalled.limiter.releaseUser('alice')
      await stalled.limiter.releaseUser('alice')
      t.equal(await other.ipCount('1.1.1.1'), 3)
      t.equal(await other.userCount('alice'), 2)
      t.equal(await other.totalCount(), 4, 'the other\'s three and the stalled instance\'s one that fits')
      t.same(await stalled.limiter.reserve('3.3.3.3', limits), { ok: true }, 'it admits again within the limits')
      t.equal(evictions.length, 1, 'no further eviction')
    })
  }

  const leaseMs = factory.crashLeaseMs
  if (leaseMs === undefined) return

  t.test(`${name}: a crashed instance's IP, total and user slots are freed after its lease`, async (t) => {
    const join = await factory.cluster(t)
    const crashed = await join('crashed', { leaseMs })
    const limits = { perIp: 2, total: 3 }
    for (const ip of ['1.1.1.1', '1.1.1.1', '2.2.2.2']) t.same(await crashed.limiter.reserve(ip, limits), { ok: true })
    t.equal(await crashed.limiter.reserveUser('alice', 2), true)
    t.equal(await crashed.limiter.reserveUser('alice', 2), true)
    const survivor = (await join('survivor')).limiter
    t.same(await survivor.reserve('1.1.1.1', limits), { ok: false, reason: 'ip_limit' })
    t.same(await survivor.reserve('3.3.3.3', limits), { ok: false, reason: 'total_limit' })
    t.equal(await survivor.reserveUser('alice', 2), false)

    // Closing without leave is a crash as the cluster sees it.
    await crashed.close()
    t.equal(await survivor.reserveUser('alice', 2), false, 'still held right after the crash')
    await eventually(async () => (await survivor.reserve('1.1.1.1', limits)).ok, leaseMs * 2 + 3000, 'the crashed slots to be freed')
    t.equal(await survivor.ipCount('1.1.1.1'), 1, 'only the survivor\'s slot is counted')
    t.equal(await survivor.ipCount('2.2.2.2'), 0)
    t.equal(await survivor.totalCount(), 1)
    t.equal(await survivor.reserveUser('alice', 2), true)
    t.equal(await survivor.userCount('alice'), 1, 'only the survivor\'s user slot is counted')
  })
}
