import t, { type Test } from 'tap'
import { connect } from 'node:net'
import type { DirectoryEntry } from '../lib/cluster/directory.js'
import { RedisClusterState } from '../lib/cluster/redis/redis-cluster-state.js'
import { keySlot } from '../lib/cluster/redis/cluster/slot.js'
import { eventually } from '../lib/testing/cluster-state-factory.js'
import { directorySuite } from '../lib/testing/directory-suite.js'
import { limiterSuite } from '../lib/testing/limiter-suite.js'
import { presenceSuite } from '../lib/testing/presence-suite.js'
import { PrivateRedisCluster, redisClusterNodes } from './helpers/redis-cluster.js'
import { clusterHome, clusterKeys, clusterSuiteFactory } from './helpers/redis-cluster-states.js'
import { needsRedisServer, recordingLogger } from './helpers/redis-server.js'

const nodes = redisClusterNodes(t)
const { log: quiet } = recordingLogger()
// Short enough for the crash tests to be quick, long enough for renewals on a busy machine.
const CRASH_LEASE_MS = 300

const entry = (id: string, instanceId: string, userId: string | null = null): DirectoryEntry => ({
  id, ip: '10.0.0.1', userId, connectedAt: new Date(0).toISOString(), instanceId
})

if (nodes !== null) {
  const factory = clusterSuiteFactory(nodes, quiet, CRASH_LEASE_MS)
  limiterSuite(t, 'redis cluster limiter', factory)
  directorySuite(t, 'redis cluster directory', factory)
  presenceSuite(t, 'redis cluster presence', factory)

  t.test('every key of the registry is in one slot, the hash tag being the prefix', async (t) => {
    const home = clusterHome(t, nodes, 'cluster-slot', quiet)
    const a = await home.join('ia')
    const b = await home.join('ib')
    t.same(await a.limiter.reserve('1.1.1.1', { perIp: 5, total: 10 }), { ok: true })
    t.equal(await b.limiter.reserveUser('alice', 2), true)
    await a.directory.add(entry('c1', 'ia', 'alice'))
    await b.presence.add('room:1', { clientId: 'c2', userId: 'bob' })
    await b.presence.add('room:2', { clientId: 'c2', userId: 'bob' })
    const keys = await clusterKeys(home.admin, `{${home.prefix}}*`)
    t.ok(keys.length >= 12, `${keys.length} keys`)
    t.ok(keys.some((key) => key.includes('presence:room:2')) && keys.some((key) => key.includes('inst:ib:presence')))
    const slots = new Set<unknown>()
    for (const key of keys) slots.add(await home.admin.call('CLUSTER', 'KEYSLOT', key))
    t.same([...slots], [keySlot(`{${home.prefix}}`)], 'one slot, Redis agrees with ours')
    await a.directory.leave('ia')
    await b.directory.leave('ib')
    t.same(await clusterKeys(home.admin, `{${home.prefix}}*`), [], 'a clean leave of every instance leaves no key')
  })

  t.test('a prefix a cluster cannot tag is refused', async (t) => {
    t.throws(() => new RedisClusterState({ type: 'redis', cluster: { nodes }, keyPrefix: '' }, quiet), { name: 'OptionsError', message: /must not be empty on a Redis Cluster/ })
    t.throws(() => new RedisClusterState({ type: 'redis', cluster: { nodes }, keyPrefix: 'a{b}:' }, quiet), { name: 'OptionsError', message: /must not contain/ })
    t.throws(() => new RedisClusterState({ type: 'redis', cluster: { nodes }, url: 'redis://127.0.0.1:1' }, quiet), { name: 'OptionsError', message: /exactly one of "url", "client" or "cluster"/ })
  })

  t.test('a failover of the registry\'s master: limits and presence resume by themselves, within a measured time', { skip: needsRedisServer() }, async (t) => {
    const cluster = await PrivateRedisCluster.start(t)
    // A subtest, so its states and keys are gone before the cluster stops.
    await t.test('on a private cluster', async (t) => { await failover(t, cluster) })
  })
}

async function failover (t: Test, cluster: PrivateRedisCluster): Promise<void> {
  const leaseMs = 1_500
  const home = clusterHome(t, cluster.addresses, 'cluster-failover', quiet)
  const a = await home.join('ia', leaseMs)
  const b = await home.join('ib', leaseMs)
  const limits = { perIp: 100, total: 100 }
  for (const ip of ['1.1.1.1', '1.1.1.1', '2.2.2.2']) t.same(await a.limiter.reserve(ip, limits), { ok: true })
  t.same(await b.limiter.reserve('3.3.3.3', limits), { ok: true })
  await a.presence.add('room', { clientId: 'a1', userId: 'alice' })
  await b.presence.add('room', { clientId: 'b1', userId: 'bob' })

  const slot = keySlot(`{${home.prefix}}`)
  const master = (await cluster.masters()).find((node) => node.slots.some(([from, to]) => slot >= from && slot <= to))
  if (master === undefined) throw new Error(`no master serves slot ${slot}`)
  const failing = cluster.killMaster(master.port)
  // Timed from when the master stops accepting connections (polled every 10 ms).
  await eventually(async () => !(await accepts(master.port)), 10_000, 'the master to die')
  const killedAt = performance.now()

  // From the kill on: every call fails until the cluster client finds the
  // promoted replica, none may hang, and none may count twice.
  let reserved = 0
  let resumedMs = 0
  let attempts = 0
  let longestMs = 0
  await eventually(async () => {
    attempts++
    const began = performance.now()
    const result = await a.limiter.reserve('9.9.9.9', limits).catch(() => null)
    longestMs = Math.max(longestMs, performance.now() - began)
    if (result?.ok !== true) return false
    reserved++
    resumedMs = Math.round(performance.now() - killedAt)
    return true
  }, 30_000, 'a reservation to succeed after the failover')
  const failover = await failing
  await eventually(async () => await a.presence.add('room', { clientId: 'a2', userId: 'carol' }).then(() => true, () => false), 10_000, 'presence to take writes')
  const presenceMs = Math.round(performance.now() - killedAt)
  // Each instance restores its own state on the promoted replica, so the
  // counts are exact whatever the replica had received.
  await eventually(async () => await a.limiter.totalCount().catch(() => -1) === 4 + reserved, 10_000, 'the counts to be exact')
  await eventually(async () => (await b.presence.list('room', { limit: 0 }).catch(() => null))?.clients === 3, 10_000, 'presence to be exact')
  const exactMs = Math.round(performance.now() - killedAt)
  await eventually(async () => a.state() === 'up' && b.state() === 'up', 10_000, 'both to report up')
  t.equal(await a.limiter.ipCount('1.1.1.1'), 2)
  t.equal(await b.limiter.ipCount('3.3.3.3'), 1)
  t.same((await b.presence.list('room', { limit: 10 })).members.map((m) => m.clientId), ['a1', 'a2', 'b1'])
  t.comment(`failover of the registry's master: Redis promoted a replica in ${failover.failoverMs} ms; a reservation succeeded again ${resumedMs} ms after the kill (${attempts} attempts, the longest ${Math.round(longestMs)} ms), presence took writes after ${presenceMs} ms, counts and members were exact after ${exactMs} ms`)
  t.ok(resumedMs < failover.failoverMs + 5_000, 'limits resume within a few seconds of the failover')
  t.ok(longestMs < 5_000, 'no call waited for the failover')
}

async function accepts (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { resolve(false) })
  })
}
