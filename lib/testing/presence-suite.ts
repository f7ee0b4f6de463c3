/**
 * The contract every Presence backend must pass. A backend's test file
 * calls `presenceSuite` with the same factory as the limiter and directory
 * suites; the cluster states it joins must carry `presence`.
 */
import type { ClusterState } from '../cluster/cluster-state.js'
import type { Presence, PresenceDeparture, PresenceMember } from '../cluster/presence.js'
import type { TapLike } from './tap-like.js'
import { eventually, type ClusterStateFactory } from './cluster-state-factory.js'

const member = (clientId: string, userId: string | null, info?: unknown): PresenceMember =>
  info === undefined ? { clientId, userId } : { clientId, userId, info }

function presenceOf (state: ClusterState): Presence {
  if (state.presence === undefined) throw new Error('presenceSuite: the cluster state has no presence')
  return state.presence
}

/** Every member of a topic, page by page. */
async function listAll (presence: Presence, topic: string, limit: number): Promise<{ ids: string[], pages: number }> {
  const ids: string[] = []
  let cursor: string | undefined
  let pages = 0
  do {
    const page = await presence.list(topic, cursor === undefined ? { limit } : { limit, cursor })
    pages++
    if (page.members.length > limit) throw new Error(`a page of ${page.members.length} members for limit ${limit}`)
    ids.push(...page.members.map((m) => m.clientId))
    cursor = page.cursor
  } while (cursor !== undefined && pages < 10_000)
  return { ids, pages }
}

export function presenceSuite (t: TapLike, name: string, factory: ClusterStateFactory): void {
  t.test(`${name}: a user's first and last connection, counted once however many it has`, async (t) => {
    const join = await factory.cluster(t)
    const a = presenceOf(await join('ia'))
    const b = presenceOf(await join('ib'))
    t.equal(await a.add('room', member('c1', 'alice')), true, 'alice\'s first')
    t.equal(await b.add('room', member('c2', 'alice')), false, 'alice\'s second tab, on another instance')
    t.equal(await b.add('room', member('c3', 'bob')), true)
    t.equal(await a.add('room', member('c4', null)), true, 'an anonymous connection is a user of its own')
    t.equal(await a.add('room', member('c5', null)), true)
    t.equal(await a.add('other', member('c1', 'alice')), true, 'topics are apart')
    t.same(await a.list('room', { limit: 0 }), { members: [], clients: 5, users: 4 })
    t.equal(await b.remove('room', 'c2'), false, 'alice still has c1')
    t.equal(await a.remove('room', 'c1'), true, 'alice\'s last')
    t.equal(await a.remove('room', 'c1'), false, 'not a member any more')
    t.equal(await b.remove('room', 'nobody'), false)
    t.same(await b.list('room', { limit: 0 }), { members: [], clients: 3, users: 3 })
    t.same(await b.list('other', { limit: 0 }), { members: [], clients: 1, users: 1 })
  })

  t.test(`${name}: adding a member twice changes nothing`, async (t) => {
    const a = presenceOf(await (await factory.cluster(t))('ia'))
    t.equal(await a.add('room', member('c1', 'alice')), true)
    t.equal(await a.add('room', member('c1', 'alice')), false)
    t.same(await a.list('room', { limit: 10 }), { members: [member('c1', 'alice')], clients: 1, users: 1 })
    t.equal(await a.remove('room', 'c1'), true)
    t.same(await a.list('room', { limit: 10 }), { members: [], clients: 0, users: 0 }, 'nothing left of the topic')
  })

  t.test(`${name}: members of every instance, with info, in client id order`, async (t) => {
    const join = await factory.cluster(t)
    const a = presenceOf(await join('ia'))
    const b = presenceOf(await join('ib'))
    await b.add('room', member('c2', 'bob', { name: 'Bob', tags: ['x'] }))
    await a.add('room', member('c1', 'alice', { name: 'Alice' }))
    await a.add('room', member('c3', null))
    const page = await b.list('room', { limit: 10 })
    t.same(page, {
      members: [member('c1', 'alice', { name: 'Alice' }), member('c2', 'bob', { name: 'Bob', tags: ['x'] }), member('c3', null)],
      clients: 3,
      users: 3
    }, 'no cursor on the last page')
    t.same(await a.list('empty', { limit: 10 }), { members: [], clients: 0, users: 0 })
  })

  t.test(`${name}: pages neither repeat nor skip, with members leaving in between`, async (t) => {
    const join = await factory.cluster(t)
    const a = presenceOf(await join('ia'))
    const b = presenceOf(await join('ib'))
    const ids = Array.from({ length: 53 }, (_, n) => `c${String((n * 7) % 53).padStart(2, '0')}`)
    const holder = new Map<string, Presence>()
    for (const [n, id] of ids.entries()) {
      holder.set(id, n % 2 === 0 ? a : b)
      await (n % 2 === 0 ? a : b).add('room', member(id, `u${n % 10}`))
    }
    const first = await a.list('room', { limit: 10 })
    t.equal(first.members.length, 10)
    t.equal(first.clients, 53)
    t.equal(first.users, 10)
    t.equal(first.cursor, 'c09', 'the cursor is where the page ended')
    // Removing the cursor's own member does not lose the place.
    await holder.get('c09')?.remove('room', 'c09')
    await holder.get('c10')?.remove('room', 'c10')
    const rest = await listAll(b, 'room', 10)
    const expected = ids.filter((id) => id !== 'c09' && id !== 'c10').sort()
    t.same(rest.ids, expected, 'every member once, in id order')
    t.equal(rest.pages, 6)
    const after = await a.list('room', { limit: 10, cursor: 'c09' })
    t.same(after.members.map((m) => m.clientId), expected.slice(9, 19), 'a stale cursor still pages on from where it was')
  })

  const leaseMs = factory.crashLeaseMs

  t.test(`${name}: an instance that leaves takes its members, and one other instance announces them`, async (t) => {
    const join = await factory.cluster(t)
    const a = presenceOf(await join('ia', leaseMs === undefined ? {} : { leaseMs }))
    const leaving = await join('ib')
    const b = presenceOf(leaving)
    if (a.onDeparted === undefined) {
      t.ok(true, 'a backend without departures (one process is one instance)')
      return
    }
    const departed: PresenceDeparture[] = []
    a.onDeparted((list) => departed.push(...list))
    await a.add('room', member('a1', 'alice'))
    await b.add('room', member('b1', 'alice'))
    await b.add('room', member('b2', 'bob'))
    await b.add('other', member('b2', 'bob'))
    await leaving.directory.leave('ib')
    t.same(await a.list('room', { limit: 10 }), { members: [member('a1', 'alice')], clients: 1, users: 1 }, 'gone at once')
    await eventually(async () => departed.length >= 3, 10_000, 'the departures to be announced')
    const sorted = departed.map((d) => `${d.topic} ${d.clientId} ${String(d.userId)} ${String(d.lastOfUser)}`).sort()
    t.same(sorted, ['other b2 bob true', 'room b1 alice false', 'room b2 bob true'], 'bob left both topics; alice is still in the room')
  })

  if (leaseMs === undefined) return

  t.test(`${name}: a crashed instance's members go after its lease, each announced once`, async (t) => {
    const join = await factory.cluster(t)
    const crashed = await join('crashed', { leaseMs })
    const s1 = presenceOf(await join('s1', { leaseMs }))
    const s2 = presenceOf(await join('s2', { leaseMs }))
    const departed: PresenceDeparture[] = []
    s1.onDeparted?.((list) => departed.push(...list))
    s2.onDeparted?.((list) => departed.push(...list))
    const c = presenceOf(crashed)
    for (let n = 0; n < 30; n++) await c.add('room', member(`x${String(n).padStart(2, '0')}`, `u${n % 3}`))
    await s1.add('room', member('s1-0', 'u0'))
    await crashed.close()
    t.equal((await s1.list('room', { limit: 0 })).clients, 31, 'still listed right after the crash')
    await eventually(async () => (await s2.list('room', { limit: 0 })).clients === 1, leaseMs * 2 + 3000, 'the crashed members to go')
    await eventually(async () => departed.length >= 30, leaseMs * 2 + 3000, 'every departure to be announced')
    t.equal(departed.length, 30, 'each once, by one instance')
    t.equal(new Set(departed.map((d) => d.clientId)).size, 30)
    const last = departed.filter((d) => d.lastOfUser).map((d) => d.userId).sort()
    t.same(last, ['u1', 'u2'], 'u0 still has a connection on s1')
    t.same(await s1.list('room', { limit: 10 }), { members: [member('s1-0', 'u0')], clients: 1, users: 1 })
  })

  const lapse = factory.lapse
  if (lapse === undefined) return

  t.test(`${name}: an instance whose lease lapsed restores its members, counted once`, async (t) => {
    const join = await factory.cluster(t)
    const stalled = await join('stalled')
    const other = presenceOf(await join('other'))
    const p = presenceOf(stalled)
    await p.add('room', member('m1', 'alice'))
    await p.add('room', member('m2', 'alice'))
    await other.add('room', member('o1', 'bob'))
    await lapse(stalled, 'stalled')
    // Its next write finds the lease lost and restores everything first.
    await p.add('room', member('m3', 'carol'))
    await p.remove('room', 'm2')
    t.same(await other.list('room', { limit: 10 }), {
      members: [member('m1', 'alice'), member('m3', 'carol'), member('o1', 'bob')],
      clients: 3,
      users: 3
    })
  })
}
