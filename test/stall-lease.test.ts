/**
 * Leases under stalls, not crashes (issue 10, items 4 and 5): a Redis that
 * stops serving for longer than `leaseMs` must not cost live instances their
 * leases, and an instance that stalls past its lease must re-reserve what it
 * holds when it comes back, closing with 1013 what no longer fits. Real
 * processes: a private redis-server and hubs frozen with SIGSTOP.
 */
import t from 'tap'
import { Redis } from 'ioredis'
import { WebSocket } from 'ws'
import { build, connect, handshakeStatus, until, type TestClient } from './helpers.js'
import { HubProcess } from './helpers/cluster.js'
import { LEVEL, PrivateRedis, needsRedisServer, recordingLogger, uniquePrefix } from './helpers/redis-server.js'
import { RedisClusterState } from '../lib/cluster/redis/redis-cluster-state.js'
import { pickEvicted } from '../lib/cluster/limiter.js'
import { CloseCodes, type WsHubOptions } from '../lib/index.js'

const skip = needsRedisServer()
const LEASE_MS = 1500

function redisOptions (url: string, prefix: string, extra: WsHubOptions = {}): WsHubOptions {
  return { registry: { type: 'redis', url, keyPrefix: prefix, leaseMs: LEASE_MS }, ...extra }
}

const sleep = async (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** A handshake's status: 101 (the socket is kept open and returned), a refusal, or 0 when the connection failed. */
async function attempt (url: string): Promise<{ status: number, socket?: WebSocket }> {
  return await handshakeStatus(url).catch(() => ({ status: 0 }))
}

/** The cluster-wide count of the listing, or null while the registry cannot answer. */
async function listed (base: string): Promise<number | null> {
  const res = await fetch(`${base}/api/connections?limit=1`).catch(() => null)
  if (res === null || res.status !== 200) return null
  return (await res.json() as { count: number }).count
}

const isOpen = (socket: WebSocket): boolean => socket.readyState === WebSocket.OPEN

/** The code a client was closed with, or null if it is still open after `ms`. */
async function closeCode (client: TestClient, ms = 5000): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined
  const open = new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), ms) })
  const closed = await Promise.race([client.closed.then((c) => c.code), open])
  clearTimeout(timer)
  return closed
}

t.test('eviction picks the newest connections, those over their IP or user limit first, and no more than needed', async (t) => {
  const newestFirst = [
    { id: 'n6', ip: 'b', userId: null },
    { id: 'n5', ip: 'a', userId: 'bob' },
    { id: 'n4', ip: 'b', userId: 'alice' },
    { id: 'n3', ip: 'a', userId: null },
    { id: 'n2', ip: 'a', userId: 'alice' },
    { id: 'n1', ip: 'c', userId: null }
  ]
  const ids = (eviction: Parameters<typeof pickEvicted>[0]): string[] => pickEvicted(eviction, newestFirst).map((c) => c.id)
  t.same(ids({ ips: new Map([['a', 2]]), users: new Map(), total: 0 }), ['n5', 'n3'], 'the newest of the IP')
  t.same(ids({ ips: new Map([['a', 1]]), users: new Map([['alice', 1]]), total: 2 }), ['n5', 'n4'], 'each close counts against every excess it clears')
  t.same(ids({ ips: new Map([['a', 1]]), users: new Map(), total: 3 }), ['n5', 'n6', 'n4'], 'then the newest of any, while the total is over')
  t.same(ids({ ips: new Map([['z', 3]]), users: new Map(), total: 0 }), [], 'nothing held for that IP, nothing closed')
})

t.test('regression: a Redis stall longer than leaseMs reaps no live instance', { skip }, async (t) => {
  const redis = await PrivateRedis.start(t)
  const prefix = uniquePrefix('stall-state')
  const { log, lines } = recordingLogger()
  const states = ['a', 'b'].map(() => new RedisClusterState({ type: 'redis', url: redis.url, keyPrefix: prefix, leaseMs: 300 }, log))
  t.teardown(async () => { for (const state of states) await state.close() })
  const [a, b] = states as [RedisClusterState, RedisClusterState]
  await a.directory.join('a')
  await b.directory.join('b')
  const limits = { perIp: 4, total: 10 }
  for (const state of [a, a, b, b]) t.same(await state.limiter.reserve('9.9.9.9', limits), { ok: true })
  await a.directory.add({ id: 'ca', ip: '9.9.9.9', userId: null, connectedAt: new Date(0).toISOString(), instanceId: 'a' })
  await b.directory.add({ id: 'cb', ip: '9.9.9.9', userId: null, connectedAt: new Date(0).toISOString(), instanceId: 'b' })

  redis.pause()
  await sleep(1200) // four leases
  redis.resume()
  const answers = async (): Promise<boolean> => b.limiter.reserve('9.9.9.9', limits).then((r) => r.ok || r.reason === 'ip_limit', () => false)
  await until(answers, 10_000, 'Redis to answer again')
  const admin = new Redis(redis.url)
  t.teardown(() => admin.quit())
  for (let n = 0; n < 5; n++) {
    t.same((await b.directory.instances()).sort(), ['a', 'b'], 'both instances keep their leases')
    t.equal(await a.limiter.ipCount('9.9.9.9'), 4, 'their slots stay counted')
    t.equal((await a.directory.list({ limit: 10, offset: 0 })).count, 2, 'their connections stay listed')
    await sleep(150)
  }
  t.same(await a.limiter.reserve('9.9.9.9', limits), { ok: false, reason: 'ip_limit' }, 'nothing over the limit is admitted')
  t.notOk(lines.some((l) => l.level >= LEVEL.warn && l.msg.includes('lapsed')), 'no lease lapsed')
  t.ok(Number(await admin.get(`${prefix}served`)) > 0, 'Redis records when it last served')
})

t.test('regression: limits overshoot after a Redis stall longer than leaseMs', { skip }, async (t) => {
  const redis = await PrivateRedis.start(t)
  const options = redisOptions(redis.url, uniquePrefix('stall-overshoot'), { maxConnectionsPerIp: 6 })
  const hubs = await Promise.all([HubProcess.start(t, options), HubProcess.start(t, options)])
  const clients: TestClient[] = []
  for (const hub of hubs) for (let n = 0; n < 3; n++) clients.push(await connect(hub.wsUrl))
  t.teardown(() => { for (const c of clients) c.close() })
  t.equal((await attempt(hubs[0].wsUrl)).status, 429, 'the IP is at its limit across both instances')

  redis.pause()
  await sleep(LEASE_MS * 2 + 500)
  redis.resume()

  // Many handshakes while the instances reconnect and after; the listing polled throughout.
  const admitted: WebSocket[] = []
  const counts: number[] = []
  const deadline = Date.now() + 5000
  for (let round = 0; Date.now() < deadline; round++) {
    const results = await Promise.all(hubs.flatMap((hub) => Array.from({ length: 5 }, async () => attempt(hub.wsUrl))))
    for (const r of results) if (r.socket !== undefined) admitted.push(r.socket)
    const count = await listed(hubs[round % 2]?.url ?? '')
    if (count !== null) counts.push(count)
    await sleep(100)
  }
  t.teardown(() => { for (const s of admitted) s.close() })
  t.equal(admitted.length, 0, 'no client over the per-IP limit was admitted')
  t.ok(counts.length >= 5, `the listing answered after the stall (${counts.length} times)`)
  t.same(counts.filter((c) => c !== 6), [], `the listing never dropped a live connection (${JSON.stringify(counts)})`)
  t.ok(clients.every((c) => isOpen(c.socket)), 'every client from before the stall is still connected')
})

t.test('a lapsed instance closes its newest connections that no longer fit, with 1013, before admitting anyone', { skip }, async (t) => {
  const redis = await PrivateRedis.start(t)
  const prefix = uniquePrefix('stall-fence')
  // A long lease: only the handshake below, not a renewal, finds the lapse.
  const options: WsHubOptions = { registry: { type: 'redis', url: redis.url, keyPrefix: prefix, leaseMs: 15_000 }, maxConnectionsPerIp: 5 }
  const a = await build(t, options)
  const b = await build(t, options)
  const onA: TestClient[] = []
  for (let n = 0; n < 5; n++) onA.push(await connect(a.wsUrl))
  t.teardown(() => { for (const c of onA) c.close() })
  const admin = new Redis(redis.url)
  t.teardown(() => admin.quit())

  // As if a had stalled past its lease: b's next reservation reaps it and admits three.
  await admin.zadd(`${prefix}instances`, 0, a.app.wsHub.instanceId)
  const onB: TestClient[] = []
  for (let n = 0; n < 3; n++) onB.push(await connect(b.wsUrl))
  t.teardown(() => { for (const c of onB) c.close() })

  const refused = await attempt(a.wsUrl)
  t.equal(refused.status, 429, 'a handshake on the lapsed instance restores it first, and is refused')
  t.same(await Promise.all(onA.slice(2).map(async (c) => closeCode(c))), [CloseCodes.tryAgainLater, CloseCodes.tryAgainLater, CloseCodes.tryAgainLater], 'its three newest closed with 1013')
  t.ok(onA.slice(0, 2).every((c) => isOpen(c.socket)), 'its two oldest stay')
  t.ok(onB.every((c) => isOpen(c.socket)), 'the other instance\'s clients stay')
  await until(async () => await listed(a.url) === 5, 5000, 'the listing to settle at the limit')
  t.equal((await attempt(b.wsUrl)).status, 429, 'the IP is at its limit, not over')
})

t.test('regression: a stalled instance comes back with clients it no longer holds slots for', { skip }, async (t) => {
  const redis = await PrivateRedis.start(t)
  const options = redisOptions(redis.url, uniquePrefix('stall-instance'), { maxConnectionsPerIp: 5 })
  const [stalled, other] = await Promise.all([HubProcess.start(t, options), HubProcess.start(t, options)])
  const onStalled: TestClient[] = []
  for (let n = 0; n < 5; n++) onStalled.push(await connect(stalled.wsUrl))
  t.teardown(() => { for (const c of onStalled) c.close() })

  stalled.pause()
  const pausedAt = Date.now()
  t.teardown(() => stalled.resume())
  // Its lease runs out while it is frozen; then the other instance admits the limit again.
  const onOther: WebSocket[] = []
  t.teardown(() => { for (const s of onOther) s.close() })
  await until(async () => {
    const r = await attempt(other.wsUrl)
    if (r.socket !== undefined) onOther.push(r.socket)
    return onOther.length === 5
  }, 15_000, 'the other instance to admit five once the stalled lease lapsed')
  t.ok(Date.now() - pausedAt >= LEASE_MS * 2 / 3, 'not before the stalled lease could have lapsed')
  const open = (): number => onStalled.filter((c) => isOpen(c.socket)).length + onOther.filter(isOpen).length
  t.equal(open(), 10, 'twice the limit is open while the instance is frozen')

  stalled.resume()
  const resumedAt = Date.now()
  await until(() => open() <= 5, 10_000, 'the open connections of the IP to come back within its limit')
  t.ok(Date.now() - resumedAt < 5000, `back within the limit ${Date.now() - resumedAt} ms after the resume`)
  t.same(await Promise.all(onStalled.map(async (c) => closeCode(c))), Array(5).fill(CloseCodes.tryAgainLater), 'the stalled instance closed its clients with 1013')
  for (let n = 0; n < 5; n++) {
    t.equal(open(), 5, 'and it stays there')
    await sleep(100)
  }
  t.ok(onOther.every(isOpen), 'the other instance\'s clients stay')
  await until(async () => await listed(other.url) === 5, 5000, 'the listing to show the limit')
  t.equal((await attempt(stalled.wsUrl)).status, 429, 'the stalled instance admits nobody over the limit')
})
