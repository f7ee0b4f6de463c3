/**
 * RedisLease against a real Redis (REDIS_URL, default
 * redis://127.0.0.1:6379): taking, waiting, renewing, losing (taken over,
 * or Redis unreachable past the expiry) and releasing. Every lease is a
 * fresh key, deleted at the end. Skipped when nothing answers at REDIS_URL.
 */
import t, { type Test as Tap } from 'tap'
import { Redis } from 'ioredis'
import { RedisLease } from '../lib/sources/leases/redis-lease.js'
import { redisAnswers } from './helpers/redis-server.js'
import { uniqueName, quietLogger } from '../lib/testing/source-suite.js'
import { sleep } from './helpers/source-records.js'
import { until } from './helpers.js'

const url = process.env.REDIS_URL !== undefined && process.env.REDIS_URL !== '' ? process.env.REDIS_URL : 'redis://127.0.0.1:6379'
const TTL = 300

if (!await redisAnswers(url)) {
  t.plan(0, `nothing answers at ${url}`)
} else {
  const admin = new Redis(url, { maxRetriesPerRequest: 1 })
  const made = new Set<string>()
  t.teardown(async () => {
    if (made.size > 0) await admin.del(...made)
    await admin.quit()
  })

  const newKey = (): string => {
    const key = `ws-hub-test:${uniqueName('lease')}`
    made.add(key)
    return key
  }

  /** A connection of the test's own (the lease never closes the one it is given), closed at the end. */
  function connection (t: Tap): Redis {
    const client = new Redis(url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 50 })
    client.on('error', () => {})
    t.teardown(() => { client.disconnect() })
    return client
  }

  async function ready (client: Redis): Promise<Redis> {
    if (client.status !== 'ready') await new Promise((resolve) => client.once('ready', resolve))
    return client
  }

  function lease (client: Redis, key: string, holder: string, t: Tap): RedisLease {
    const made = new RedisLease({ client, key, holder, ttlMs: TTL, log: quietLogger })
    t.teardown(async () => { await made.release().catch(() => {}) })
    return made
  }

  t.test('redis lease: a free lease is taken at once, holds the holder\'s id, expires in ttl unless renewed', async (t) => {
    const key = newKey()
    const client = await ready(connection(t))
    const a = lease(client, key, 'a', t)
    t.equal(a.held(), false, 'not held before acquire')
    t.equal(await a.acquire(new AbortController().signal), true)
    t.equal(a.held(), true)
    t.equal(await admin.get(key), 'a', 'the key names its holder')
    const ttl = await admin.pttl(key)
    t.ok(ttl > 0 && ttl <= TTL, `expires within the ttl (${ttl} ms)`)
  })

  t.test('redis lease: renewed every third of the ttl, it outlives the ttl many times over', async (t) => {
    const key = newKey()
    const a = lease(await ready(connection(t)), key, 'a', t)
    let lost = false
    a.onLost(() => { lost = true })
    await a.acquire(new AbortController().signal)
    await sleep(TTL * 4)
    t.equal(a.held(), true)
    t.equal(lost, false)
    t.equal(await admin.get(key), 'a')
  })

  t.test('redis lease: another holder waits; abort ends the wait with false; release hands it over at once', async (t) => {
    const key = newKey()
    const client = await ready(connection(t))
    const a = lease(client, key, 'a', t)
    const b = lease(client, key, 'b', t)
    await a.acquire(new AbortController().signal)
    const abort = new AbortController()
    const waiting = b.acquire(abort.signal)
    await sleep(TTL)
    abort.abort()
    t.equal(await waiting, false, 'aborted while a holds it')
    t.equal(b.held(), false)
    const taking = b.acquire(new AbortController().signal)
    const released = Date.now()
    await a.release()
    t.equal(a.held(), false)
    t.equal(await taking, true, 'b takes it')
    t.ok(Date.now() - released < TTL, 'within a retry period of the release, not after the ttl')
    t.equal(await admin.get(key), 'b')
  })

  t.test('redis lease: taken over by another holder, it is lost at the next renewal and its release leaves the other\'s alone', async (t) => {
    const key = newKey()
    const a = lease(await ready(connection(t)), key, 'a', t)
    let lost = 0
    a.onLost(() => { lost++ })
    await a.acquire(new AbortController().signal)
    await admin.set(key, 'intruder', 'PX', 60_000)
    await until(() => lost > 0, TTL, 'onLost')
    t.equal(lost, 1, 'onLost once')
    t.equal(a.held(), false)
    await a.release()
    t.equal(await admin.get(key), 'intruder', 'release never deletes another holder\'s lease')
  })

  t.test('redis lease: a holder that cannot reach Redis loses it before it expires, and another takes it after the ttl', async (t) => {
    const key = newKey()
    const lonely = new Redis(url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
    lonely.on('error', () => {})
    t.teardown(() => { lonely.disconnect() })
    await ready(lonely)
    const a = new RedisLease({ client: lonely, key, holder: 'a', ttlMs: TTL, log: quietLogger })
    let lostAt = 0
    a.onLost(() => { lostAt = Date.now() })
    await a.acquire(new AbortController().signal)
    const cut = Date.now()
    // Its renewals now fail at once (no offline queue, no reconnect).
    lonely.disconnect()
    const b = lease(await ready(connection(t)), key, 'b', t)
    const bAcquired = b.acquire(new AbortController().signal).then(() => Date.now())
    await until(() => lostAt > 0, TTL * 2, 'a to give the lease up')
    const took = await bAcquired
    t.ok(lostAt - cut < TTL, `a gave up before the ttl ran out (${lostAt - cut} ms)`)
    t.ok(took >= lostAt, 'b took it only after a gave it up')
    t.equal(await admin.get(key), 'b')
  })

  t.test('redis lease: the same holder coming back under its id takes its own lease at once', async (t) => {
    const key = newKey()
    await admin.set(key, 'a', 'PX', 60_000)
    const again = lease(await ready(connection(t)), key, 'a', t)
    const started = Date.now()
    t.equal(await again.acquire(new AbortController().signal), true)
    t.ok(Date.now() - started < TTL / 3, 'without waiting for the old expiry')
    t.ok(await admin.pttl(key) <= TTL, 'with the ttl of this lease')
  })

  t.test('redis lease: release of a lease never held does nothing', async (t) => {
    const key = newKey()
    await admin.set(key, 'other', 'PX', 60_000)
    const a = lease(await ready(connection(t)), key, 'a', t)
    await a.release()
    t.equal(await admin.get(key), 'other')
  })
}
