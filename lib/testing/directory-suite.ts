/**
 * The contract every Directory backend must pass. A backend's test file
 * calls `directorySuite` with a factory; nothing here knows which backend it
 * runs.
 */
import type { DirectoryEntry } from '../cluster/directory.js'
import type { TapLike } from './tap-like.js'
import { eventually, type ClusterStateFactory } from './cluster-state-factory.js'

export type { ClusterStateFactory } from './cluster-state-factory.js'

const entry = (id: string, instanceId: string, userId: string | null = null, ip = '10.0.0.1'): DirectoryEntry => ({
  id, ip, userId, connectedAt: new Date(0).toISOString(), instanceId
})

export function directorySuite (t: TapLike, name: string, factory: ClusterStateFactory): void {
  t.test(`${name}: locates clients and users across instances`, async (t) => {
    const join = await factory.cluster(t)
    const a = (await join('ia')).directory
    const b = (await join('ib')).directory
    await a.add(entry('c1', 'ia', 'alice'))
    await b.add(entry('c2', 'ib', 'alice'))
    await b.add(entry('c3', 'ib', 'bob'))
    t.equal(await a.locate('c2'), 'ib')
    t.equal(await b.locate('c1'), 'ia')
    t.equal(await a.locate('nope'), null)
    t.same((await a.locateUser('alice')).sort(), ['ia', 'ib'])
    t.same(await a.locateUser('bob'), ['ib'])
    t.same(await a.locateUser('carol'), [])
    await b.remove('c2')
    t.same(await a.locateUser('alice'), ['ia'])
    t.equal(await a.locate('c2'), null)
  })

  t.test(`${name}: get returns an entry from any instance`, async (t) => {
    const join = await factory.cluster(t)
    const a = (await join('ia')).directory
    const b = (await join('ib')).directory
    const added = entry('c1', 'ib', 'alice', '192.0.2.7')
    await b.add(added)
    t.same(await a.get('c1'), added, 'the whole entry, read on another instance')
    t.same(await b.get('c1'), added)
    t.equal(await a.get('nope'), null)
    await b.remove('c1')
    t.equal(await a.get('c1'), null)
  })

  t.test(`${name}: lists the whole cluster with paging, in client id order`, async (t) => {
    const join = await factory.cluster(t)
    const a = (await join('ia')).directory
    const b = (await join('ib')).directory
    for (let n = 0; n < 5; n++) await a.add(entry(`a${n}`, 'ia'))
    for (let n = 0; n < 4; n++) await b.add(entry(`b${n}`, 'ib'))
    const first = await a.list({ limit: 4, offset: 0 })
    const rest = await a.list({ limit: 10, offset: 4 })
    t.equal(first.count, 9)
    t.equal(first.entries.length, 4)
    t.equal(rest.entries.length, 5)
    t.same([...first.entries, ...rest.entries].map((c) => c.id), ['a0', 'a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2', 'b3'])
    t.equal(rest.entries.find((c) => c.id === 'b0')?.instanceId, 'ib')
    t.same((await a.list({ limit: 5, offset: 10 })).entries, [], 'past the end')
    t.same(await a.list({ limit: 0, offset: 0 }), { count: 9, entries: [] }, 'a count alone')
  })

  t.test(`${name}: pages through offsets neither repeat nor skip`, async (t) => {
    const join = await factory.cluster(t)
    const a = (await join('ia')).directory
    const b = (await join('ib')).directory
    // Added out of order, from both instances, with removals in between.
    const ids = Array.from({ length: 23 }, (_, n) => `c${String((n * 7) % 23).padStart(2, '0')}`)
    for (const [n, id] of ids.entries()) await (n % 2 === 0 ? a : b).add(entry(id, n % 2 === 0 ? 'ia' : 'ib'))
    await a.remove('c00')
    await b.remove('c07')
    const seen: string[] = []
    for (let offset = 0; ; offset += 5) {
      const page = await b.list({ limit: 5, offset })
      t.equal(page.count, 21)
      if (page.entries.length === 0) break
      seen.push(...page.entries.map((c) => c.id))
    }
    const expected = ids.filter((id) => id !== 'c00' && id !== 'c07').sort()
    t.same(seen, expected, 'every entry once, in id order')
  })

  t.test(`${name}: users are counted per connection, and a re-add replaces`, async (t) => {
    const { directory } = await (await factory.cluster(t))('a')
    await directory.add(entry('c2', 'a', 'alice'))
    await directory.add(entry('c1', 'a', 'alice'))
    await directory.add(entry('c1', 'a', 'alice'))
    t.equal((await directory.list({ limit: 10, offset: 0 })).count, 2)
    await directory.remove('c2')
    t.same(await directory.locateUser('alice'), ['a'], 'one of two connections left (a re-add is not a second one)')
    await directory.remove('c1')
    t.same(await directory.locateUser('alice'), [])
    await directory.remove('c1')
    t.equal((await directory.list({ limit: 10, offset: 0 })).count, 0)
  })

  t.test(`${name}: instances join and leave, and leave takes their entries`, async (t) => {
    const join = await factory.cluster(t)
    const a = (await join('ia')).directory
    const b = (await join('ib')).directory
    t.same((await a.instances()).sort(), ['ia', 'ib'])
    await a.add(entry('a1', 'ia', 'alice'))
    await b.add(entry('b1', 'ib', 'alice'))
    await b.leave('ib')
    t.same(await a.instances(), ['ia'])
    t.equal(await a.locate('b1'), null)
    t.same(await a.locateUser('alice'), ['ia'])
    t.same((await a.list({ limit: 10, offset: 0 })).entries.map((c) => c.id), ['a1'])
  })

  const leaseMs = factory.crashLeaseMs
  if (leaseMs === undefined) return

  t.test(`${name}: a crashed instance's entries and membership go after its lease`, async (t) => {
    const join = await factory.cluster(t)
    const crashed = await join('crashed', { leaseMs })
    await crashed.directory.add(entry('c1', 'crashed', 'alice'))
    // Short too: the survivor's renewals, a few per lease, are what reap.
    const survivor = (await join('survivor', { leaseMs })).directory
    await survivor.add(entry('s1', 'survivor', 'alice'))
    t.same((await survivor.instances()).sort(), ['crashed', 'survivor'])

    // Closing without leave is a crash as the cluster sees it.
    await crashed.close()
    t.equal(await survivor.locate('c1'), 'crashed', 'still listed right after the crash')
    await eventually(async () => await survivor.locate('c1') === null, leaseMs * 2 + 3000, 'the crashed entries to go')
    t.equal(await survivor.get('c1'), null)
    t.same(await survivor.locateUser('alice'), ['survivor'])
    t.same(await survivor.instances(), ['survivor'])
    t.same((await survivor.list({ limit: 10, offset: 0 })), { count: 1, entries: [entry('s1', 'survivor', 'alice')] })
  })
}
