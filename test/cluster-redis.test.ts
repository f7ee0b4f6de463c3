/**
 * Several hub instances sharing one Redis act as one hub: every kind of
 * delivery crosses instances, limits and listings are cluster-wide, a
 * crashed instance's slots come back, and a Redis outage degrades but
 * never stops local service.
 */
import t from 'tap'
import { Redis } from 'ioredis'
import { build, connect, handshakeStatus, until, type Built } from './helpers.js'
import { deleteKeysUnder, needsRedisServer, PrivateRedis, redisUrl, uniquePrefix } from './helpers/redis-server.js'
import { HubProcess } from './helpers/cluster.js'
import type { Authenticate, WsHubOptions } from '../lib/index.js'

const url = redisUrl(t)

const authenticate: Authenticate = (request) => {
  const user = request.headers['x-user']
  return typeof user === 'string' ? { userId: user } : null
}

function redisOptions (redis: string, prefix: string, extra: WsHubOptions = {}): WsHubOptions {
  return {
    broker: { type: 'redis', url: redis, channelPrefix: prefix },
    registry: { type: 'redis', url: redis, keyPrefix: prefix, leaseMs: 1500 },
    ...extra
  }
}

async function cleanup (t: { teardown: (fn: () => unknown) => void }, redis: string, prefix: string): Promise<void> {
  t.teardown(async () => {
    const client = new Redis(redis)
    await deleteKeysUnder(client, prefix)
    await client.quit()
  })
}

const post = async (base: string, path: string, body: unknown): Promise<Response> => fetch(`${base}${path}`, {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body)
})

if (url !== null) {
  t.test('two instances: broadcast, direct, user and topic cross instances', async (t) => {
    const prefix = uniquePrefix('cluster')
    await cleanup(t, url, prefix)
    const a = await build(t, redisOptions(url, prefix, { authenticate, maxConnectionsPerUser: 5 }))
    const b = await build(t, redisOptions(url, prefix, { authenticate, maxConnectionsPerUser: 5 }))
    const alice = await connect(a.wsUrl, { headers: { 'x-user': 'alice' } })
    const bob = await connect(b.wsUrl, { headers: { 'x-user': 'bob' } })
    const aliceOnB = await connect(b.wsUrl, { headers: { 'x-user': 'alice' } })

    alice.send({ type: 'broadcast', message: 'hello all', id: 1 })
    for (const c of [alice, bob, aliceOnB]) t.match(await c.next('message'), { from: alice.clientId, fromUser: 'alice', message: 'hello all' })

    bob.send({ type: 'direct', target: alice.clientId, message: 'psst', id: 2 })
    t.match(await alice.next('direct'), { from: bob.clientId, message: 'psst' })
    t.equal((await bob.next('ack')).id, 2)
    t.ok(await aliceOnB.nothingBefore('direct'), 'a direct message reaches only its target')

    bob.send({ type: 'direct', user: 'alice', message: 'to every alice', id: 3 })
    t.match(await alice.next('direct'), { user: 'alice', message: 'to every alice' })
    t.match(await aliceOnB.next('direct'), { user: 'alice', message: 'to every alice' })

    bob.send({ type: 'direct', target: 'no-such-client', message: 'x', id: 4 })
    t.match(await bob.next('error'), { code: 'unknown_target', id: 4 })

    alice.send({ type: 'subscribe', topic: 'prices', id: 5 })
    await alice.next('ack')
    const published = await post(b.url, '/api/topics/prices/publish', { message: { p: 1 } })
    t.same(await published.json(), { recipients: 0, remoteInstances: 1 }, 'one other instance took part')
    t.match(await alice.next('publish'), { topic: 'prices', from: 'server', message: { p: 1 } })
    t.ok(await bob.nothingBefore('publish'))

    const toUser = await post(a.url, '/api/users/alice/send', { message: 'rest to alice' })
    t.same(await toUser.json(), { recipients: 1, remoteInstances: 1 })
    t.match(await aliceOnB.next('direct'), { from: 'server', message: 'rest to alice' })

    const toClient = await post(a.url, `/api/connections/${bob.clientId}/send`, { message: 'rest to bob' })
    t.same(await toClient.json(), { recipients: 0, remoteInstances: 1 })
    t.match(await bob.next('direct'), { from: 'server', message: 'rest to bob' })
    t.ok(await alice.nothingBefore('server-broadcast'), 'nothing duplicated or stray')
  })

  t.test('listing, closing and per-IP limits are cluster-wide', async (t) => {
    const prefix = uniquePrefix('cluster-limits')
    await cleanup(t, url, prefix)
    const a = await build(t, redisOptions(url, prefix, { maxConnectionsPerIp: 3 }))
    const b = await build(t, redisOptions(url, prefix, { maxConnectionsPerIp: 3 }))
    const c1 = await connect(a.wsUrl)
    const c2 = await connect(b.wsUrl)
    const c3 = await connect(b.wsUrl)
    t.equal((await handshakeStatus(a.wsUrl)).status, 429, 'the fourth from this IP is refused on either instance')
    t.equal((await handshakeStatus(b.wsUrl)).status, 429)

    const list = await (await fetch(`${a.url}/api/connections`)).json() as { count: number, connections: Array<{ id: string, instanceId: string }> }
    t.equal(list.count, 3)
    const where = Object.fromEntries(list.connections.map((c) => [c.id, c.instanceId]))
    t.equal(where[c1.clientId], a.app.wsHub.instanceId)
    t.equal(where[c2.clientId], b.app.wsHub.instanceId)

    const del = await fetch(`${a.url}/api/connections/${c3.clientId}`, { method: 'DELETE' })
    t.equal(del.status, 204, 'a DELETE on one instance closes a client held by another')
    t.same(await c3.closed, { code: 4000, reason: 'closed by server' })
    await until(async () => (await handshakeStatus(a.wsUrl)).status === 101, 5000, 'the slot is free again')
  })

  t.test('regression: GET /api/connections/:id and maxConnectionsPerUser answer for the whole cluster, with an instance in its own process', async (t) => {
    const prefix = uniquePrefix('cluster-lookup')
    await cleanup(t, url, prefix)
    const remote = await HubProcess.start(t, { ...redisOptions(url, prefix, { maxConnectionsPerUser: 2 }), userHeader: 'x-user' })
    const local = await build(t, redisOptions(url, prefix, { authenticate, maxConnectionsPerUser: 2, handshakeRateLimit: false }))
    const far = await connect(remote.wsUrl, { headers: { 'x-user': 'alice' } })
    t.teardown(() => far.close())
    far.send({ type: 'subscribe', topic: 'news', id: 1 })
    await far.next('ack')

    const res = await fetch(`${local.url}/api/connections/${far.clientId}`)
    t.equal(res.status, 200, 'the instance that does not hold the client answers')
    t.match(await res.json(), { id: far.clientId, userId: 'alice', instanceId: remote.instanceId, topics: ['news'] })
    t.equal((await fetch(`${local.url}/api/connections/no-such-client`)).status, 404)
    const info = await local.app.wsHub.get(far.clientId)
    t.same(info?.topics, ['news'], 'the facade asks the holding instance too')

    const near = await connect(local.wsUrl, { headers: { 'x-user': 'alice' } })
    t.teardown(() => near.close())
    const third = await handshakeStatus(local.wsUrl, { headers: { 'x-user': 'alice' } })
    t.equal(third.status, 429, 'alice holds two connections across the cluster: a third is refused')
    t.match(third.body, /user_limit/)
    const bob = await handshakeStatus(remote.wsUrl, { headers: { 'x-user': 'bob' } })
    t.equal(bob.status, 101, 'another user is not affected')
    bob.socket?.close()

    // A crashed holder: its user slot comes back after the lease, and a lookup of its client ends (404 or 503), never hangs.
    await remote.kill()
    const started = Date.now()
    const during = await fetch(`${local.url}/api/connections/${far.clientId}`)
    t.ok(during.status === 503 || during.status === 404, `answered ${during.status} while the holder is gone`)
    t.ok(Date.now() - started < 5000, 'within queryTimeoutMs, not hanging')
    await until(async () => {
      const attempt = await handshakeStatus(local.wsUrl, { headers: { 'x-user': 'alice' } })
      attempt.socket?.close()
      return attempt.status === 101
    }, 10_000, 'the dead instance\'s user slot is freed after its lease')
  })

  t.test('instances in separate processes; a SIGKILLed instance\'s slots free after the lease', async (t) => {
    const prefix = uniquePrefix('cluster-proc')
    await cleanup(t, url, prefix)
    const options = redisOptions(url, prefix, { maxConnectionsPerIp: 4 })
    const [p1, p2] = await Promise.all([HubProcess.start(t, options), HubProcess.start(t, options)])
    const x = await connect(p1.wsUrl)
    const y = await connect(p2.wsUrl)
    const doomed = await Promise.all([connect(p2.wsUrl), connect(p2.wsUrl)])
    x.send({ type: 'broadcast', message: 'across processes' })
    t.equal((await y.next('message')).message, 'across processes')
    t.equal((await handshakeStatus(p1.wsUrl)).status, 429, 'four held across both processes')

    await p2.kill()
    for (const d of doomed) await d.closed
    const started = Date.now()
    await until(async () => (await handshakeStatus(p1.wsUrl)).status === 101, 10_000, 'the dead instance\'s slots to free')
    t.ok(Date.now() - started < 1500 + 2000, 'within the lease (1.5 s) and a reap')
    const list = await (await fetch(`${p1.url}/api/connections`)).json() as { connections: Array<{ instanceId: string }> }
    t.notOk(list.connections.some((c) => c.instanceId === p2.instanceId), 'its connections are gone from the listing')
  })

  t.test('Redis stopped and restarted mid-traffic', { skip: needsRedisServer() }, async (t) => {
    const redis = await PrivateRedis.start(t)
    const prefix = uniquePrefix('cluster-outage')
    const a: Built = await build(t, redisOptions(redis.url, prefix))
    const b: Built = await build(t, redisOptions(redis.url, prefix))
    const onA = await connect(a.wsUrl)
    const onA2 = await connect(a.wsUrl)
    const onB = await connect(b.wsUrl)

    onA.send({ type: 'broadcast', message: 'before', id: 'before' })
    t.equal((await onB.next('message')).message, 'before')
    t.equal((await onA2.next('message')).message, 'before')
    t.equal((await onA.next('ack')).id, 'before')

    await redis.stop()
    await until(async () => (await (await fetch(`${a.url}/api/health`)).json() as { status: string }).status === 'degraded', 10_000, 'health to degrade')
    t.same(await (await fetch(`${a.url}/api/health/live`)).json(), { status: 'ok' }, 'liveness stays OK')
    onA.send({ type: 'broadcast', message: 'during', id: 'during' })
    t.equal((await onA2.next('message')).message, 'during', 'local delivery continues')
    t.equal((await onA.next('ack')).id, 'during', 'the sender is still acked')

    await redis.start()
    await until(async () => (await (await fetch(`${a.url}/api/health`)).json() as { status: string }).status === 'ok' &&
      (await (await fetch(`${b.url}/api/health`)).json() as { status: string }).status === 'ok', 15_000, 'both to recover')
    onA.send({ type: 'broadcast', message: 'after' })
    t.equal((await onB.next('message')).message, 'after', 'cross-instance delivery resumed by itself')
    await new Promise((resolve) => setTimeout(resolve, 300))
    const seen = onB.frames.filter((f) => f.type === 'message').map((f) => f.message)
    t.same(seen, [], 'nothing lost during the outage arrived late, nothing twice')
    t.ok(a.app.wsHub.stats().brokerPublishFailures >= 1, 'the failed publish was counted')
  })
}
