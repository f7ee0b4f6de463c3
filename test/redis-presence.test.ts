import t from 'tap'
import { Redis } from 'ioredis'
import { RedisClusterState } from '../lib/cluster/redis/redis-cluster-state.js'
import { eventually, type ClusterStateFactory } from '../lib/testing/cluster-state-factory.js'
import { presenceSuite } from '../lib/testing/presence-suite.js'
import { clusterStates } from './helpers/cluster-states.js'
import { deleteKeysUnder, keysUnder, recordingLogger, redisUrl } from './helpers/redis-server.js'

const url = redisUrl(t)
const { log: quiet } = recordingLogger()
const CRASH_LEASE_MS = 300

/** Cluster states on one fresh prefix; the teardown closes them and deletes every key under it. */
interface Home {
  prefix: string
  admin: Redis
  join: (instanceId: string, leaseMs?: number) => Promise<RedisClusterState>
}

function home (t: { teardown: (fn: () => unknown) => void }, redisUrl: string): Home {
  const states = clusterStates(t, redisUrl, 'presence', quiet)
  return { prefix: states.prefix, admin: states.admin, join: async (instanceId, leaseMs) => states.join(instanceId, { leaseMs }) }
}

function suiteFactory (redisUrl: string): ClusterStateFactory {
  const homes = new WeakMap<object, Home>()
  return {
    cluster: async (t) => {
      const h = home(t, redisUrl)
      return async (instanceId, options) => {
        const state = await h.join(instanceId, options?.leaseMs)
        homes.set(state, h)
        return state
      }
    },
    crashLeaseMs: CRASH_LEASE_MS,
    lapse: async (state, instanceId) => {
      const h = homes.get(state)
      if (h === undefined) throw new Error(`lapse: ${instanceId} was not joined through this factory`)
      await h.admin.zadd(`${h.prefix}instances`, 0, instanceId)
    }
  }
}

if (url !== null) {
  presenceSuite(t, 'redis presence', suiteFactory(url))

  t.test('Redis loses its data: each instance restores its members, and nothing is counted twice', async (t) => {
    const h = home(t, url)
    const a = await h.join('ia', CRASH_LEASE_MS)
    const b = await h.join('ib', CRASH_LEASE_MS)
    await a.presence.add('room', { clientId: 'a1', userId: 'alice', info: { name: 'Alice' } })
    await a.presence.add('room', { clientId: 'a2', userId: 'alice' })
    await b.presence.add('room', { clientId: 'b1', userId: 'bob' })
    // As a restart without persistence finds it: every key gone.
    await deleteKeysUnder(h.admin, h.prefix)
    t.same(await a.presence.list('room', { limit: 0 }), { members: [], clients: 0, users: 0 })
    // Each instance's next renewal finds its lease gone and restores; a
    // second round of renewals must not add anything again.
    await eventually(async () => (await a.presence.list('room', { limit: 0 })).clients === 3, 5_000, 'both instances to restore')
    await new Promise((resolve) => setTimeout(resolve, CRASH_LEASE_MS))
    t.same(await b.presence.list('room', { limit: 10 }), {
      members: [{ clientId: 'a1', userId: 'alice', info: { name: 'Alice' } }, { clientId: 'a2', userId: 'alice' }, { clientId: 'b1', userId: 'bob' }],
      clients: 3,
      users: 2
    })
    t.equal(await a.presence.remove('room', 'a1'), false)
    t.equal(await a.presence.remove('room', 'a2'), true, 'alice\'s last, counted once')
  })

  t.test('a clean leave leaves no presence key behind, and the last instance leaves no departures', async (t) => {
    const h = home(t, url)
    const a = await h.join('ia')
    await a.presence.add('room', { clientId: 'a1', userId: 'alice' })
    await a.presence.add('room:2', { clientId: 'a1', userId: 'alice' })
    t.ok((await keysUnder(h.admin, h.prefix)).some((key) => key.includes('presence:room')))
    await a.directory.leave('ia')
    t.same(await keysUnder(h.admin, h.prefix), [], 'no key at all')
  })

  t.test('a page of a 10,000-member topic is one short script, and the counts need no scan', async (t) => {
    const h = home(t, url)
    const a = await h.join('ia')
    const adds = []
    for (let n = 0; n < 10_000; n++) adds.push(a.presence.add('big', { clientId: `c${String(n).padStart(5, '0')}`, userId: `u${n % 2500}` }))
    await Promise.all(adds)
    const started = process.hrtime.bigint()
    const page = await a.presence.list('big', { limit: 100, cursor: 'c05000' })
    const ms = Number(process.hrtime.bigint() - started) / 1e6
    t.equal(page.clients, 10_000)
    t.equal(page.users, 2500)
    t.equal(page.members.length, 100)
    t.equal(page.members[0]?.clientId, 'c05001')
    t.equal(page.cursor, 'c05100')
    t.ok(ms < 200, `a page took ${ms.toFixed(1)} ms`)
  })
}
