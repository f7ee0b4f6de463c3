import t from 'tap'
import { Redis } from 'ioredis'
import type { History } from '../lib/cluster/history.js'
import { RedisHistory } from '../lib/cluster/redis/redis-history.js'
import { createHistory } from '../lib/cluster/backends.js'
import { HubErrorCodes } from '../lib/errors.js'
import { historySuite } from '../lib/testing/history-suite.js'
import { eventually } from '../lib/testing/cluster-state-factory.js'
import { PrivateRedis, deleteKeysUnder, keysUnder, needsRedisServer, plainClient, recordingLogger, redisUrl, uniquePrefix } from './helpers/redis-server.js'

const url = redisUrl(t)
const { log: quiet } = recordingLogger()
const retention = { size: 100, ttlMs: 60_000 }
const append = async (history: History, topic: string, idempotencyKey?: string) => await history.append({
  topic,
  retention,
  frame: (p) => JSON.stringify({ type: 'publish', topic, offset: p.offset, epoch: p.epoch }),
  idempotencyWindowMs: 60_000,
  ...(idempotencyKey === undefined ? {} : { idempotencyKey })
})

if (url !== null) {
  historySuite(t, 'redis history', {
    // Stores on one fresh prefix; closed, then their keys deleted.
    open: async (t) => {
      const prefix = uniquePrefix('history')
      const stores: RedisHistory[] = []
      t.teardown(async () => {
        await Promise.all(stores.map(async (store) => await store.close()))
        const admin = new Redis(url, { maxRetriesPerRequest: 1 })
        await deleteKeysUnder(admin, prefix)
        await admin.quit()
      })
      return async () => {
        const store = new RedisHistory({ url, keyPrefix: prefix }, quiet)
        stores.push(store)
        return store
      }
    }
  })

  t.test('redis history: every key of a topic expires; only the base epoch stays', async (t) => {
    const prefix = uniquePrefix('history-expiry')
    const admin = plainClient(t, url)
    const history = new RedisHistory({ url, keyPrefix: prefix }, quiet)
    t.teardown(async () => { await history.close(); await deleteKeysUnder(admin, prefix) })
    const short = { size: 10, ttlMs: 300 }
    await history.append({ topic: 'user:1', retention: short, frame: (p) => String(p.offset), idempotencyKey: 'k', idempotencyWindowMs: 300 })
    const keys = await keysUnder(admin, prefix)
    t.same(keys, [`${prefix}history:epoch`, `${prefix}history:{user:1}:head`, `${prefix}history:{user:1}:key:k`, `${prefix}history:{user:1}:log`].sort())
    for (const key of keys.filter((k) => !k.endsWith('history:epoch'))) {
      const ttl = await admin.pttl(key)
      t.ok(ttl > 0 && ttl <= 300, `${key} expires (${ttl} ms)`)
    }
    await eventually(async () => (await keysUnder(admin, prefix)).length === 1, 5_000, 'the topic keys to expire')
    t.same(await keysUnder(admin, prefix), [`${prefix}history:epoch`])
  })

  t.test('redis history: a topic\'s keys share one hash tag', async (t) => {
    const prefix = uniquePrefix('history-slot')
    const admin = plainClient(t, url)
    const history = new RedisHistory({ url, keyPrefix: prefix }, quiet)
    t.teardown(async () => { await history.close(); await deleteKeysUnder(admin, prefix) })
    await append(history, 'room:a', 'k')
    const slots = new Set<unknown>()
    for (const key of (await keysUnder(admin, prefix)).filter((k) => k.includes('{room:a}'))) {
      slots.add(await admin.call('CLUSTER', 'KEYSLOT', key).catch(() => key.slice(key.indexOf('{'), key.indexOf('}') + 1)))
    }
    t.equal(slots.size, 1)
  })

  t.test('redis history: with a client, works on a duplicate and never closes it', async (t) => {
    const prefix = uniquePrefix('history-client')
    const client = plainClient(t, url)
    const history = await createHistory({ type: 'redis', client, url: undefined, cluster: undefined, keyPrefix: prefix }, { type: 'memory' }, quiet)
    t.equal(history.owned, true, 'the store is the hub\'s to close; the client is not')
    t.equal((await append(history.value, 't')).offset, 1)
    await history.value.close()
    t.equal(await client.ping(), 'PONG', 'the user\'s client is still open')
    await deleteKeysUnder(client, prefix)
  })

  t.test('redis history: rejects at once while Redis is down, and works again after', { skip: needsRedisServer() }, async (t) => {
    const server = await PrivateRedis.start(t)
    const history = new RedisHistory({ url: server.url }, quiet)
    t.teardown(() => history.close())
    const first = await append(history, 't', 'k')
    await server.stop()
    await t.rejects(append(history, 't'), { code: HubErrorCodes.clusterState })
    await server.start()
    // Restarted without persistence: the stream, its counter and its epoch are gone.
    let after: Awaited<ReturnType<typeof append>> | null = null
    await eventually(async () => {
      after = await append(history, 't').catch(() => null)
      return after !== null
    }, 10_000, 'Redis to answer again')
    const fresh = after as unknown as { offset: number, epoch: string }
    t.equal(fresh.offset, 1, 'offsets start again')
    t.not(fresh.epoch, first.epoch, 'under a new epoch')
    t.same(await history.read('t', { offset: 1, epoch: first.epoch }, 100, retention), { ok: false, position: { offset: 1, epoch: fresh.epoch } },
      'a position of before the restart reads ok: false, never stale data')
    const empty = await history.read('other', { offset: 0, epoch: `${first.epoch.split('.')[0] ?? ''}.${Date.now()}` }, 100, retention)
    t.equal(empty.ok, false, 'an empty position of before the restart too: what was published then is lost')
    t.equal((await append(history, 't', 'k')).duplicate, false, 'the idempotency key was lost with the rest')
  })
}
