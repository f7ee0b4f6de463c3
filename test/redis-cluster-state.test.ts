import t from 'tap'
import { spawn } from 'node:child_process'
import { statSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { Redis } from 'ioredis'
import { RedisClusterState } from '../lib/cluster/redis/redis-cluster-state.js'
import type { DirectoryEntry } from '../lib/cluster/directory.js'
import { ClusterStateError, HubErrorCodes } from '../lib/errors.js'
import { eventually, type ClusterStateFactory } from '../lib/testing/cluster-state-factory.js'
import { directorySuite } from '../lib/testing/directory-suite.js'
import { clusterStates, type ClusterStates } from './helpers/cluster-states.js'
import { limiterSuite } from '../lib/testing/limiter-suite.js'
import {
  LEVEL, PrivateRedis, freePort, keysUnder, plainClient, recordingLogger, needsRedisServer, redisUrl
} from './helpers/redis-server.js'

const url = redisUrl(t)

const entry = (id: string, instanceId: string, userId: string | null = null): DirectoryEntry => ({
  id, ip: '10.0.0.1', userId, connectedAt: new Date(0).toISOString(), instanceId
})

const { log: quiet } = recordingLogger()
// A child starts in under a second; a loaded CI machine running test files in parallel may take many.
const WORKER_TIMEOUT_MS = 30_000
// Short enough for the crash tests to be quick, long enough for renewals on a busy machine.
const CRASH_LEASE_MS = 300

function cluster (t: { teardown: (fn: () => unknown) => void }, redisUrl: string): ClusterStates {
  return clusterStates(t, redisUrl, 'cluster-state', quiet)
}

function suiteFactory (redisUrl: string, client?: Redis): ClusterStateFactory {
  // Where each state's lease lives, for `lapse`.
  const homes = new WeakMap<object, ClusterStates>()
  return {
    cluster: async (t) => {
      const home = cluster(t, redisUrl)
      return async (instanceId, options) => {
        const state = await home.join(instanceId, { leaseMs: options?.leaseMs, ...(client === undefined ? {} : { client }) })
        homes.set(state, home)
        return state
      }
    },
    crashLeaseMs: CRASH_LEASE_MS,
    // As a stalled process finds it: the lease ran out and the next script reaps it.
    lapse: async (state, instanceId) => {
      const home = homes.get(state)
      if (home === undefined) throw new Error(`lapse: ${instanceId} was not joined through this factory`)
      await home.admin.zadd(`${home.prefix}instances`, 0, instanceId)
    }
  }
}

if (url !== null) {
  limiterSuite(t, 'redis limiter (url)', suiteFactory(url))
  directorySuite(t, 'redis directory (url)', suiteFactory(url))

  t.test('redis cluster state (user client): runs the suites on a duplicate and never closes the client', async (t) => {
    const client = plainClient(t, url)
    t.test('suites', async (t) => {
      limiterSuite(t, 'redis limiter (client)', suiteFactory(url, client))
      directorySuite(t, 'redis directory (client)', suiteFactory(url, client))
    })
    await t.test('the client is still open', async (t) => {
      t.equal(client.status, 'ready')
      t.equal(await client.ping(), 'PONG')
    })
  })

  t.test('options and misuse are reported, not guessed around', async (t) => {
    t.throws(() => new RedisClusterState({ type: 'redis' }, quiet), { name: 'OptionsError' })
    t.throws(() => new RedisClusterState({ type: 'redis', url, leaseMs: 50 }, quiet), /leaseMs.*at least 100 \(got 50\)/)
    const { join, prefix } = cluster(t, url)
    const unjoined = new RedisClusterState({ type: 'redis', url, keyPrefix: prefix }, quiet)
    t.teardown(() => unjoined.close())
    await t.rejects(unjoined.limiter.reserve('1.1.1.1', { perIp: 1, total: 1 }), { name: 'ClusterStateError', code: HubErrorCodes.clusterState, message: /join\(\) first/ })
    await t.rejects(unjoined.limiter.reserveUser('alice', 1), { name: 'ClusterStateError', message: /join\(\) first/ })
    await t.rejects(unjoined.directory.add(entry('c1', 'a')), { name: 'ClusterStateError', message: /join\(\) first/ })
    t.equal(await unjoined.limiter.totalCount(), 0, 'reads need no join')
    t.equal(await unjoined.directory.get('c1'), null)
    const a = await join('a')
    await t.rejects(a.directory.add(entry('c1', 'b')), /belongs to instance b, but this directory serves a/)
    await t.rejects(a.directory.join('b'), /already joined as a/)
    await a.close()
    await a.close()
    await t.rejects(a.limiter.totalCount(), /after close/)
  })

  t.test('join rejects with context when Redis is unreachable, and leaves nothing running', async (t) => {
    const port = await freePort()
    const state = new RedisClusterState({ type: 'redis', url: `redis://user:secret@127.0.0.1:${port}` }, quiet)
    const began = Date.now()
    const err = await state.directory.join('a').then(() => null, (e: unknown) => e)
    t.ok(err instanceof ClusterStateError, 'a ClusterStateError')
    t.match(String((err as Error).message), `could not connect to redis://127.0.0.1:${port}`)
    t.notMatch(String((err as Error).message), /secret/, 'no password in the message')
    t.ok(Date.now() - began < 3000, 'fails fast')
    // A reconnect loop left behind would keep this file from ever exiting.
    await state.close()
  })

  t.test('an instance that stops renewing has its slots freed within its lease', async (t) => {
    const leaseMs = CRASH_LEASE_MS
    const { join, admin, prefix } = cluster(t, url)
    const crashed = await join('crashed', { leaseMs })
    const limits = { perIp: 2, total: 3 }
    for (const ip of ['1.1.1.1', '1.1.1.1', '2.2.2.2']) t.same(await crashed.limiter.reserve(ip, limits), { ok: true })
    t.equal(await crashed.limiter.reserveUser('alice', 1), true)
    await crashed.directory.add(entry('c1', 'crashed', 'alice'))
    // A long lease: its renewals (which reap too) stay out of the way, so
    // only the reservation's own reap can free the slots in time.
    const survivor = await join('survivor', { leaseMs: 15_000 })
    t.same(await survivor.limiter.reserve('1.1.1.1', limits), { ok: false, reason: 'ip_limit' })
    t.same(await survivor.limiter.reserve('3.3.3.3', limits), { ok: false, reason: 'total_limit' })
    t.equal(await survivor.limiter.reserveUser('alice', 1), false)

    // Closing without leave is a crash as the cluster sees it: renewals stop.
    await crashed.close()
    const crashedAt = Date.now()
    t.same(await survivor.limiter.reserve('1.1.1.1', limits), { ok: false, reason: 'ip_limit' }, 'still held right after the crash')
    await eventually(async () => (await survivor.limiter.reserve('1.1.1.1', limits)).ok, 3000, 'the crashed slots to be freed')
    const freedAfter = Date.now() - crashedAt
    // The last renewal happened at most leaseMs / 3 before the crash.
    t.ok(freedAfter >= leaseMs * 2 / 3 - 30, `held until the lease ran out (${freedAfter} ms)`)
    t.ok(freedAfter <= leaseMs + 200, `freed within the lease (${freedAfter} ms)`)

    t.equal(await survivor.limiter.ipCount('1.1.1.1'), 1, 'only the survivor\'s slot is counted')
    t.equal(await survivor.limiter.totalCount(), 1)
    t.equal(await survivor.limiter.userCount('alice'), 0, 'its user slots are gone')
    t.equal(await survivor.limiter.reserveUser('alice', 1), true)
    t.equal(await survivor.directory.locate('c1'), null, 'its connections are gone')
    t.same(await survivor.directory.locateUser('alice'), [])
    t.same(await survivor.directory.list({ limit: 10, offset: 0 }), { count: 0, entries: [] })
    t.same(await survivor.directory.instances(), ['survivor'])
    t.same(await keysUnder(admin, `${prefix}inst:crashed`), [], 'no key of it is left')
    t.same(await keysUnder(admin, `${prefix}user:`), [])
  })

  t.test('release never goes negative, and an instance cannot free another\'s slot', async (t) => {
    const { join, admin, prefix } = cluster(t, url)
    const a = (await join('a')).limiter
    const b = (await join('b')).limiter
    const limits = { perIp: 5, total: 5 }
    t.same(await a.reserve('4.4.4.4', limits), { ok: true })
    t.equal(await a.reserveUser('alice', 5), true)
    await b.release('4.4.4.4')
    await b.release('4.4.4.4')
    await b.releaseUser('alice')
    t.equal(await a.ipCount('4.4.4.4'), 1, 'b held nothing, so freed nothing')
    t.equal(await a.totalCount(), 1)
    t.equal(await a.userCount('alice'), 1)
    await a.release('4.4.4.4')
    await a.release('4.4.4.4')
    await a.release('4.4.4.4')
    await a.releaseUser('alice')
    await a.releaseUser('alice')
    t.equal(await a.ipCount('4.4.4.4'), 0)
    t.equal(await a.totalCount(), 0)
    t.equal(await a.userCount('alice'), 0)
    t.equal(await admin.hget(`${prefix}ips`, '4.4.4.4'), null, 'no zero or negative field is stored')
    t.equal(await admin.get(`${prefix}total`), null)
    t.equal(await admin.hget(`${prefix}users`, 'alice'), null)
    t.same(await admin.hgetall(`${prefix}inst:a:ips`), {})
    t.same(await admin.hgetall(`${prefix}inst:a:users`), {})
    t.same(await a.reserve('4.4.4.4', limits), { ok: true })
    t.equal(await a.ipCount('4.4.4.4'), 1, 'the next reservation counts from zero')
  })

  t.test('leave frees everything at once and leaves no key behind', async (t) => {
    const { join, admin, prefix } = cluster(t, url)
    const a = await join('a')
    const b = await join('b')
    const limits = { perIp: 10, total: 10 }
    for (const state of [a, b, a]) {
      await state.limiter.reserve('5.5.5.5', limits)
      await state.limiter.reserveUser('alice', 10)
    }
    await a.directory.add(entry('a1', 'a', 'alice'))
    await a.directory.add(entry('a2', 'a', null))
    await b.directory.add(entry('b1', 'b', 'alice'))
    await a.directory.leave('a')
    t.equal(await b.limiter.totalCount(), 1)
    t.equal(await b.limiter.ipCount('5.5.5.5'), 1)
    t.equal(await b.limiter.userCount('alice'), 1)
    t.same(await b.directory.locateUser('alice'), ['b'])
    t.equal(await b.directory.locate('a1'), null)
    t.same(await b.directory.list({ limit: 10, offset: 0 }), { count: 1, entries: [entry('b1', 'b', 'alice')] })
    t.same(await keysUnder(admin, `${prefix}inst:a:`), [])
    t.same(await b.directory.instances(), ['b'])

    await a.limiter.release('5.5.5.5')
    await a.limiter.releaseUser('alice')
    await a.directory.remove('a1')
    t.equal(await b.limiter.totalCount(), 1, 'late releases after leave change nothing')
    t.equal(await b.limiter.userCount('alice'), 1)
    await t.rejects(a.limiter.reserve('5.5.5.5', limits), /has left/)
    await t.rejects(a.limiter.reserveUser('alice', 10), /has left/)

    await b.directory.leave('b')
    t.same(await keysUnder(admin, prefix), [], 'nothing at all is left under the prefix')
  })

  t.test('the listing index follows adds, re-adds and removes; pages are sorted by id', async (t) => {
    const { join, admin, prefix } = cluster(t, url)
    const a = (await join('a')).directory
    const b = (await join('b')).directory
    for (const id of ['z', 'm', 'a', 'q']) await a.add(entry(id, 'a'))
    // Moved to b (a client that reconnected there before a noticed).
    await b.add(entry('m', 'b', 'alice'))
    const first = await a.list({ limit: 2, offset: 0 })
    const second = await a.list({ limit: 2, offset: 2 })
    t.equal(first.count, 4)
    t.same([...first.entries, ...second.entries].map((c) => c.id), ['a', 'm', 'q', 'z'])
    t.equal(first.entries[1]?.instanceId, 'b')
    t.same(await admin.smembers(`${prefix}inst:a:conns`).then((ids) => ids.sort()), ['a', 'q', 'z'], 'the re-add left a\'s set')
    await a.remove('m')
    t.equal(await b.locate('m'), 'b', 'an instance cannot remove another\'s connection')
    await b.remove('m')
    await a.remove('q')
    t.same(await admin.zrange(`${prefix}order`, 0, -1), ['a', 'z'])
    t.equal(await admin.hlen(`${prefix}conns`), 2)
    t.same((await a.list({ limit: 5, offset: 10 })).entries, [])
  })

  t.test('a write that finds its lease lapsed restores the instance, then proceeds', async (t) => {
    const { join, admin, prefix } = cluster(t, url)
    // A long lease: its timer stays out of the way, so only the write can repair.
    const a = await join('a', { leaseMs: 15_000 })
    const limits = { perIp: 10, total: 10 }
    await a.limiter.reserve('6.6.6.6', limits)
    await a.limiter.reserve('6.6.6.6', limits)
    await a.limiter.reserveUser('alice', 10)
    await a.directory.add(entry('c1', 'a', 'alice'))
    // As if the process had stalled past its lease and another instance reaped it.
    await admin.zadd(`${prefix}instances`, 0, 'a')
    const b = await join('b')
    t.equal(await b.directory.locate('c1'), null, 'reaped when b joined')
    t.equal(await b.limiter.totalCount(), 0)
    t.equal(await b.limiter.userCount('alice'), 0)
    t.same(await a.limiter.reserve('6.6.6.6', limits), { ok: true })
    t.equal(await b.limiter.ipCount('6.6.6.6'), 3, 'the two restored slots and the new one')
    t.equal(await b.limiter.totalCount(), 3)
    t.equal(await b.limiter.userCount('alice'), 1, 'the user slot is restored too')
    t.equal(await b.directory.locate('c1'), 'a')
    t.same(await b.directory.locateUser('alice'), ['a'])
    t.same((await b.directory.instances()).sort(), ['a', 'b'])

    // The same through a user reservation.
    await admin.zadd(`${prefix}instances`, 0, 'a')
    await b.limiter.reserve('7.7.7.7', limits)
    t.equal(await b.limiter.userCount('alice'), 0, 'reaped by b\'s reservation')
    t.equal(await a.limiter.reserveUser('alice', 10), true)
    t.equal(await b.limiter.userCount('alice'), 2, 'the restored user slot and the new one')
    t.equal(await b.limiter.ipCount('6.6.6.6'), 3)
  })

  t.test('the lease timer notices a lapsed lease and restores the instance', async (t) => {
    const { join, admin, prefix } = cluster(t, url)
    const { log, lines } = recordingLogger()
    const a = await join('a', { leaseMs: 300, log })
    await a.limiter.reserve('6.6.6.6', { perIp: 10, total: 10 })
    await a.limiter.reserveUser('alice', 10)
    await a.directory.add(entry('c1', 'a', 'alice'))
    await admin.zadd(`${prefix}instances`, 0, 'a')
    // The warning is logged once the renewal found the lease gone, which
    // reaped the instance; whatever is in Redis after it was restored.
    const lapsed = (): boolean => lines.some((l) => l.level === LEVEL.warn && l.msg.includes('lease') && l.msg.includes('lapsed'))
    await eventually(async () => lapsed(), 2000, 'the lapse to be noticed')
    await eventually(async () => await a.directory.locate('c1') === 'a' && await a.limiter.totalCount() === 1, 2000, 'a to be restored')
    t.equal(await a.limiter.ipCount('6.6.6.6'), 1)
    t.equal(await a.limiter.userCount('alice'), 1)
    t.same(await a.directory.locateUser('alice'), ['a'])
    const [seconds] = await admin.time()
    t.ok(Number(await admin.zscore(`${prefix}instances`, 'a')) > Number(seconds) * 1000, 'with a lease running into the future again')
  })

  t.test('Redis restarting empty: writes fail fast, then the instance is restored', { skip: needsRedisServer() }, async (t) => {
    const server = await PrivateRedis.start(t)
    const { join } = cluster(t, server.url)
    const { log, lines } = recordingLogger()
    const a = await join('a', { leaseMs: 300, log })
    const limits = { perIp: 10, total: 10 }
    await a.limiter.reserve('8.8.8.8', limits)
    await a.limiter.reserve('8.8.8.8', limits)
    await a.limiter.reserveUser('alice', 10)
    await a.limiter.reserveUser('bob', 10)
    await a.directory.add(entry('c1', 'a', 'alice'))
    await a.directory.add(entry('c2', 'a', 'bob'))

    await server.stop()
    const began = Date.now()
    await t.rejects(a.limiter.reserve('8.8.8.8', limits), ClusterStateError)
    t.ok(Date.now() - began < 2000, `reserve failed in ${Date.now() - began} ms`)
    // These happen while Redis is away; the local state keeps them.
    await t.rejects(a.limiter.release('8.8.8.8'), ClusterStateError)
    await t.rejects(a.limiter.releaseUser('bob'), ClusterStateError)
    await t.rejects(a.directory.remove('c2'), ClusterStateError)

    await server.start()
    const settled = async (): Promise<boolean> => {
      try {
        return await a.limiter.totalCount() === 1 && await a.directory.locate('c1') === 'a'
      } catch {
        return false // still reconnecting
      }
    }
    await eventually(settled, 10_000, 'the instance to be restored in the new Redis')
    t.equal(await a.limiter.ipCount('8.8.8.8'), 1)
    t.equal(await a.limiter.userCount('alice'), 1)
    t.equal(await a.limiter.userCount('bob'), 0)
    t.equal(await a.directory.locate('c2'), null)
    t.same(await a.directory.locateUser('alice'), ['a'])
    t.same(await a.directory.instances(), ['a'])
    const health = lines.filter((l) => l.msg.startsWith('ws-hub: Redis cluster state un') || l.msg.startsWith('ws-hub: Redis cluster state reachable'))
    t.same(health.map((l) => l.level), [LEVEL.warn, LEVEL.info], 'unreachable and back, each logged once')
  })

  t.test('separate processes reserving at once never exceed the limits', async (t) => {
    const worker = new URL('./helpers/reserve-worker.mjs', import.meta.url)
    const built = new URL('../dist/cluster/redis/redis-cluster-state.js', import.meta.url)
    const sources = [
      'redis-cluster-state.ts', 'redis-session.ts', 'redis-limiter.ts', 'redis-directory.ts', 'scripts.ts', 'keys.ts', 'replies.ts', 'connect.ts'
    ].map((file) => `../lib/cluster/redis/${file}`)
    let builtAt: number
    try {
      builtAt = statSync(built).mtimeMs
    } catch {
      t.fail('dist/ is missing: run `npm run build` before this test (it spawns plain Node on the compiled cluster state)')
      return
    }
    const stale = sources.filter((source) => statSync(new URL(source, import.meta.url)).mtimeMs > builtAt)
    if (stale.length > 0) {
      t.fail(`dist/ is older than ${stale.join(', ')}: run \`npm run build\``)
      return
    }

    const { admin, prefix } = cluster(t, url)
    const limits = { PER_IP: '40', TOTAL: '60', PER_USER: '25' }
    const children = ['p1', 'p2', 'p3'].map((instance) => {
      const child = spawn(process.execPath, [worker.pathname], {
        // Plain Node on compiled code: without tap's loaders in NODE_OPTIONS
        // each child starts in a fraction of a second.
        env: { ...process.env, NODE_OPTIONS: '', REDIS_URL: url, PREFIX: prefix, INSTANCE: instance, ATTEMPTS: '200', ...limits },
        stdio: ['pipe', 'pipe', 'inherit']
      })
      t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
      const next = async (what: string): Promise<string> => {
        let timer: NodeJS.Timeout | undefined
        const timeout = new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error(`worker ${instance}: no ${what} within ${WORKER_TIMEOUT_MS} ms`)), WORKER_TIMEOUT_MS)
        })
        try {
          const line = await Promise.race([lines.next(), timeout])
          if (line.done === true) throw new Error(`worker ${instance} exited before ${what}`)
          return line.value
        } finally {
          clearTimeout(timer)
        }
      }
      return { child, next }
    })
    for (const { next } of children) t.equal(await next('ready'), 'ready')
    for (const { child } of children) child.stdin.end('go\n')
    const results = await Promise.all(children.map(async ({ next }) => JSON.parse(await next('result')) as { ok: number, refused: number, userOk: number }))
    t.equal(results.reduce((sum, r) => sum + r.ok, 0), 60, `exactly the total limit succeeded across processes (${JSON.stringify(results)})`)
    t.equal(results.reduce((sum, r) => sum + r.refused, 0), 540)
    t.equal(await admin.get(`${prefix}total`), '60')
    const perIp = await admin.hgetall(`${prefix}ips`)
    t.ok(Object.values(perIp).every((n) => Number(n) <= 40), `no IP above its limit (${JSON.stringify(perIp)})`)
    t.equal(Object.values(perIp).reduce((sum, n) => sum + Number(n), 0), 60)
    t.equal(results.reduce((sum, r) => sum + r.userOk, 0), 25, 'exactly the per-user limit succeeded across processes')
    t.equal(await admin.hget(`${prefix}users`, 'shared-user'), '25')
    await Promise.all(children.map(async ({ child }) => child.exitCode ?? new Promise((resolve) => child.once('exit', resolve))))
  })
}
