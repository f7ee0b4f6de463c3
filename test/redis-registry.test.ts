import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { statSync } from 'node:fs'
import { createInterface } from 'node:readline'
import type { Redis } from 'ioredis'
import { RedisRegistry, RegistryError } from '../lib/cluster/redis/redis-registry.js'
import type { ConnectionInfo } from '../lib/connections/connection.js'
import { OptionsError } from '../lib/options/hub-options.js'
import { registrySuite } from '../lib/testing/registry-suite.js'
import { until } from './helpers.js'
import {
  LEVEL, PrivateRedis, deleteKeysUnder, freePort, keysUnder, plainClient, recordingLogger, needsRedisServer, redisUrl, uniquePrefix
} from './helpers/redis-server.js'

const url = redisUrl(t)

const info = (id: string, instanceId: string, userId: string | null = null, topics: string[] = []): ConnectionInfo => ({
  id, ip: '10.0.0.1', userId, topics, connectedAt: new Date(0).toISOString(), instanceId
})

const { log: quiet } = recordingLogger()
// A child starts in under a second; a loaded CI machine running test files in parallel may take many.
const WORKER_TIMEOUT_MS = 30_000

interface Cluster {
  prefix: string
  admin: Redis
  join: (instanceId: string, options?: { leaseMs?: number, url?: string, client?: Redis, log?: typeof quiet }) => Promise<RedisRegistry>
}

/**
 * Registries on one fresh prefix. One teardown closes them, deletes every key
 * under the prefix and closes the admin client, in that order.
 */
function cluster (t: Test, redisUrl: string): Cluster {
  const prefix = uniquePrefix('registry')
  const admin = plainClient(t, redisUrl)
  const registries: RedisRegistry[] = []
  t.teardown(async () => {
    await Promise.all(registries.map(async (registry) => registry.close()))
    await deleteKeysUnder(admin, prefix)
  })
  return {
    prefix,
    admin,
    join: async (instanceId, options = {}) => {
      const source = options.client === undefined ? { url: options.url ?? redisUrl } : { client: options.client }
      const registry = new RedisRegistry({ type: 'redis', ...source, keyPrefix: prefix, leaseMs: options.leaseMs ?? 15_000 }, options.log ?? quiet)
      registries.push(registry)
      await registry.join(instanceId)
      return registry
    }
  }
}

if (url !== null) {
  registrySuite(t, 'redis registry (url)', {
    cluster: async (t) => {
      const { join } = cluster(t, url)
      return join
    }
  })

  t.test('redis registry (user client): runs the suite on a duplicate and never closes the client', async (t) => {
    const client = plainClient(t, url)
    t.test('suite', async (t) => {
      registrySuite(t, 'redis registry (client)', {
        cluster: async (t) => {
          const { join } = cluster(t, url)
          return async (instanceId) => join(instanceId, { client })
        }
      })
    })
    await t.test('the client is still open', async (t) => {
      t.equal(client.status, 'ready')
      t.equal(await client.ping(), 'PONG')
    })
  })

  t.test('options and misuse are reported, not guessed around', async (t) => {
    t.throws(() => new RedisRegistry({ type: 'redis' }, quiet), OptionsError)
    t.throws(() => new RedisRegistry({ type: 'redis', url, leaseMs: 50 }, quiet), /leaseMs.*at least 100 \(got 50\)/)
    const { join, prefix } = cluster(t, url)
    const unjoined = new RedisRegistry({ type: 'redis', url, keyPrefix: prefix }, quiet)
    t.teardown(() => unjoined.close())
    await t.rejects(unjoined.reserve('1.1.1.1', { perIp: 1, total: 1 }), { name: 'RegistryError', message: /join\(\) first/ })
    t.equal(await unjoined.totalCount(), 0, 'reads need no join')
    const a = await join('a')
    await t.rejects(a.add(info('c1', 'b')), /belongs to instance b, but this registry serves a/)
    await t.rejects(a.join('b'), /already joined as a/)
    await a.close()
    await a.close()
    await t.rejects(a.totalCount(), /after close/)
  })

  t.test('join rejects with context when Redis is unreachable, and leaves nothing running', async (t) => {
    const port = await freePort()
    const registry = new RedisRegistry({ type: 'redis', url: `redis://user:secret@127.0.0.1:${port}` }, quiet)
    const began = Date.now()
    const err = await registry.join('a').then(() => null, (e: unknown) => e)
    t.ok(err instanceof RegistryError, 'a RegistryError')
    t.match(String((err as Error).message), `could not connect to redis://127.0.0.1:${port}`)
    t.notMatch(String((err as Error).message), /secret/, 'no password in the message')
    t.ok(Date.now() - began < 3000, 'fails fast')
    // A reconnect loop left behind would keep this file from ever exiting.
    await registry.close()
  })

  t.test('an instance that stops renewing has its slots freed within its lease', async (t) => {
    const leaseMs = 300
    const { join, admin, prefix } = cluster(t, url)
    const crashed = await join('crashed', { leaseMs })
    const limits = { perIp: 2, total: 3 }
    for (const ip of ['1.1.1.1', '1.1.1.1', '2.2.2.2']) t.same(await crashed.reserve(ip, limits), { ok: true })
    await crashed.add(info('c1', 'crashed', 'alice'))
    // A long lease: its renewals (which reap too) stay out of the way, so
    // only the reservation's own reap can free the slots in time.
    const survivor = await join('survivor', { leaseMs: 15_000 })
    t.same(await survivor.reserve('1.1.1.1', limits), { ok: false, reason: 'ip_limit' })
    t.same(await survivor.reserve('3.3.3.3', limits), { ok: false, reason: 'total_limit' })

    // Closing without leave is a crash as the cluster sees it: renewals stop.
    await crashed.close()
    const crashedAt = Date.now()
    t.same(await survivor.reserve('1.1.1.1', limits), { ok: false, reason: 'ip_limit' }, 'still held right after the crash')
    await until(async () => (await survivor.reserve('1.1.1.1', limits)).ok, 3000, 'the crashed slots to be freed')
    const freedAfter = Date.now() - crashedAt
    // The last renewal happened at most leaseMs / 3 before the crash.
    t.ok(freedAfter >= leaseMs * 2 / 3 - 30, `held until the lease ran out (${freedAfter} ms)`)
    t.ok(freedAfter <= leaseMs + 200, `freed within the lease (${freedAfter} ms)`)

    t.equal(await survivor.ipCount('1.1.1.1'), 1, 'only the survivor\'s slot is counted')
    t.equal(await survivor.totalCount(), 1)
    t.equal(await survivor.locate('c1'), null, 'its connections are gone')
    t.same(await survivor.locateUser('alice'), [])
    t.same(await survivor.instances(), ['survivor'])
    t.same(await keysUnder(admin, `${prefix}inst:crashed`), [], 'no key of it is left')
    t.same(await keysUnder(admin, `${prefix}user:`), [])
  })

  t.test('release never goes negative, and an instance cannot free another\'s slot', async (t) => {
    const { join, admin, prefix } = cluster(t, url)
    const a = await join('a')
    const b = await join('b')
    const limits = { perIp: 5, total: 5 }
    t.same(await a.reserve('4.4.4.4', limits), { ok: true })
    await b.release('4.4.4.4')
    await b.release('4.4.4.4')
    t.equal(await a.ipCount('4.4.4.4'), 1, 'b held nothing, so freed nothing')
    t.equal(await a.totalCount(), 1)
    await a.release('4.4.4.4')
    await a.release('4.4.4.4')
    await a.release('4.4.4.4')
    t.equal(await a.ipCount('4.4.4.4'), 0)
    t.equal(await a.totalCount(), 0)
    t.equal(await admin.hget(`${prefix}ips`, '4.4.4.4'), null, 'no zero or negative field is stored')
    t.equal(await admin.get(`${prefix}total`), null)
    t.same(await admin.hgetall(`${prefix}inst:a:ips`), {})
    t.same(await a.reserve('4.4.4.4', limits), { ok: true })
    t.equal(await a.ipCount('4.4.4.4'), 1, 'the next reservation counts from zero')
  })

  t.test('leave frees everything at once and leaves no key behind', async (t) => {
    const { join, admin, prefix } = cluster(t, url)
    const a = await join('a')
    const b = await join('b')
    const limits = { perIp: 10, total: 10 }
    for (const registry of [a, b, a]) await registry.reserve('5.5.5.5', limits)
    await a.add(info('a1', 'a', 'alice'))
    await a.add(info('a2', 'a', null))
    await b.add(info('b1', 'b', 'alice'))
    await a.leave('a')
    t.equal(await b.totalCount(), 1)
    t.equal(await b.ipCount('5.5.5.5'), 1)
    t.same(await b.locateUser('alice'), ['b'])
    t.equal(await b.locate('a1'), null)
    t.same((await b.list({ limit: 10, offset: 0 })).connections.map((c) => c.id), ['b1'])
    t.same(await keysUnder(admin, `${prefix}inst:a:`), [])
    t.same(await b.instances(), ['b'])

    await a.release('5.5.5.5')
    await a.remove('a1')
    t.equal(await b.totalCount(), 1, 'late releases after leave change nothing')
    await t.rejects(a.reserve('5.5.5.5', limits), /has left/)

    await b.leave('b')
    t.same(await keysUnder(admin, prefix), [], 'nothing at all is left under the prefix')
  })

  t.test('users are counted per connection, update needs a present connection, pages are sorted by id', async (t) => {
    const { join } = cluster(t, url)
    const a = await join('a')
    await a.add(info('c2', 'a', 'alice'))
    await a.add(info('c1', 'a', 'alice'))
    await a.add(info('c1', 'a', 'alice'))
    await a.remove('c2')
    t.same(await a.locateUser('alice'), ['a'], 'one of two connections left (a re-add is not a second one)')
    await a.remove('c1')
    t.same(await a.locateUser('alice'), [])
    await a.update(info('ghost', 'a', null, ['x']))
    t.equal(await a.locate('ghost'), null, 'update does not create')
    for (const id of ['z', 'm', 'a', 'q']) await a.add(info(id, 'a'))
    await a.update(info('m', 'a', null, ['news']))
    const first = await a.list({ limit: 2, offset: 0 })
    const second = await a.list({ limit: 2, offset: 2 })
    t.equal(first.count, 4)
    t.same([...first.connections, ...second.connections].map((c) => c.id), ['a', 'm', 'q', 'z'])
    t.same(first.connections[1]?.topics, ['news'])
    t.same((await a.list({ limit: 5, offset: 10 })).connections, [])
  })

  t.test('a write that finds its lease lapsed restores the instance, then proceeds', async (t) => {
    const { join, admin, prefix } = cluster(t, url)
    // A long lease: its timer stays out of the way, so only the write can repair.
    const a = await join('a', { leaseMs: 15_000 })
    const limits = { perIp: 10, total: 10 }
    await a.reserve('6.6.6.6', limits)
    await a.reserve('6.6.6.6', limits)
    await a.add(info('c1', 'a', 'alice'))
    // As if the process had stalled past its lease and another instance reaped it.
    await admin.zadd(`${prefix}instances`, 0, 'a')
    const b = await join('b')
    t.equal(await b.locate('c1'), null, 'reaped when b joined')
    t.equal(await b.totalCount(), 0)
    t.same(await a.reserve('6.6.6.6', limits), { ok: true })
    t.equal(await b.ipCount('6.6.6.6'), 3, 'the two restored slots and the new one')
    t.equal(await b.totalCount(), 3)
    t.equal(await b.locate('c1'), 'a')
    t.same(await b.locateUser('alice'), ['a'])
    t.same((await b.instances()).sort(), ['a', 'b'])
  })

  t.test('the lease timer notices a lapsed lease and restores the instance', async (t) => {
    const { join, admin, prefix } = cluster(t, url)
    const { log, lines } = recordingLogger()
    const a = await join('a', { leaseMs: 300, log })
    await a.reserve('6.6.6.6', { perIp: 10, total: 10 })
    await a.add(info('c1', 'a', 'alice'))
    await admin.zadd(`${prefix}instances`, 0, 'a')
    // The warning is logged once the renewal found the lease gone, which
    // reaped the instance; whatever is in Redis after it was restored.
    const lapsed = (): boolean => lines.some((l) => l.level === LEVEL.warn && l.msg.includes('lease') && l.msg.includes('lapsed'))
    await until(lapsed, 2000, 'the lapse to be noticed')
    await until(async () => await a.locate('c1') === 'a' && await a.totalCount() === 1, 2000, 'a to be restored')
    t.equal(await a.ipCount('6.6.6.6'), 1)
    t.same(await a.locateUser('alice'), ['a'])
    const [seconds] = await admin.time()
    t.ok(Number(await admin.zscore(`${prefix}instances`, 'a')) > Number(seconds) * 1000, 'with a lease running into the future again')
  })

  t.test('Redis restarting empty: writes fail fast, then the instance is restored', { skip: needsRedisServer() }, async (t) => {
    const server = await PrivateRedis.start(t)
    const { join } = cluster(t, server.url)
    const { log, lines } = recordingLogger()
    const a = await join('a', { leaseMs: 300, log })
    const limits = { perIp: 10, total: 10 }
    await a.reserve('8.8.8.8', limits)
    await a.reserve('8.8.8.8', limits)
    await a.add(info('c1', 'a', 'alice'))
    await a.add(info('c2', 'a', 'bob'))

    await server.stop()
    const began = Date.now()
    await t.rejects(a.reserve('8.8.8.8', limits), RegistryError)
    t.ok(Date.now() - began < 2000, `reserve failed in ${Date.now() - began} ms`)
    // These happen while Redis is away; the local state keeps them.
    await t.rejects(a.release('8.8.8.8'), RegistryError)
    await t.rejects(a.remove('c2'), RegistryError)

    await server.start()
    const settled = async (): Promise<boolean> => {
      try {
        return await a.totalCount() === 1 && await a.locate('c1') === 'a'
      } catch {
        return false // still reconnecting
      }
    }
    await until(settled, 10_000, 'the instance to be restored in the new Redis')
    t.equal(await a.ipCount('8.8.8.8'), 1)
    t.equal(await a.locate('c2'), null)
    t.same(await a.locateUser('alice'), ['a'])
    t.same(await a.instances(), ['a'])
    const health = lines.filter((l) => l.msg.startsWith('ws-hub: Redis registry un') || l.msg.startsWith('ws-hub: Redis registry reachable'))
    t.same(health.map((l) => l.level), [LEVEL.warn, LEVEL.info], 'unreachable and back, each logged once')
  })

  t.test('separate processes reserving at once never exceed the limits', async (t) => {
    const worker = new URL('./helpers/reserve-worker.mjs', import.meta.url)
    const built = new URL('../dist/registries/redis-registry.js', import.meta.url)
    const sources = ['../lib/registries/redis-registry.ts', '../lib/redis/scripts.ts', '../lib/redis/connect.ts']
    let builtAt: number
    try {
      builtAt = statSync(built).mtimeMs
    } catch {
      t.fail('dist/ is missing: run `npm run build` before this test (it spawns plain Node on the compiled registry)')
      return
    }
    const stale = sources.filter((source) => statSync(new URL(source, import.meta.url)).mtimeMs > builtAt)
    if (stale.length > 0) {
      t.fail(`dist/ is older than ${stale.join(', ')}: run \`npm run build\``)
      return
    }

    const { admin, prefix } = cluster(t, url)
    const limits = { PER_IP: '40', TOTAL: '60' }
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
    const results = await Promise.all(children.map(async ({ next }) => JSON.parse(await next('result')) as { ok: number, refused: number }))
    t.equal(results.reduce((sum, r) => sum + r.ok, 0), 60, `exactly the total limit succeeded across processes (${JSON.stringify(results)})`)
    t.equal(results.reduce((sum, r) => sum + r.refused, 0), 540)
    t.equal(await admin.get(`${prefix}total`), '60')
    const perIp = await admin.hgetall(`${prefix}ips`)
    t.ok(Object.values(perIp).every((n) => Number(n) <= 40), `no IP above its limit (${JSON.stringify(perIp)})`)
    t.equal(Object.values(perIp).reduce((sum, n) => sum + Number(n), 0), 60)
    await Promise.all(children.map(async ({ child }) => child.exitCode ?? new Promise((resolve) => child.once('exit', resolve))))
  })
}
