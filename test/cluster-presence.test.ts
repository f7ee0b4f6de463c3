/**
 * Presence across three instances sharing one Redis, one of them in its
 * own process: members of every instance are listed everywhere, join and
 * leave cross instances, and a SIGKILLed instance's members leave within
 * its lease, with their `leave` delivered.
 */
import t from 'tap'
import { Redis } from 'ioredis'
import { build, connect, type TestClient } from './helpers.js'
import { deleteKeysUnder, redisUrl, uniquePrefix } from './helpers/redis-server.js'
import { HubProcess } from './helpers/cluster.js'
import type { Authenticate, WsHubOptions } from '../lib/index.js'

const url = redisUrl(t)
const LEASE_MS = 1500

const authenticate: Authenticate = (request) => {
  const user = request.headers['x-user']
  return typeof user === 'string' ? { userId: user, info: { name: user } } : null
}

const topics: WsHubOptions['topics'] = { namespaces: { chat: { presence: true, joinLeave: true } } }

function options (redis: string, prefix: string): WsHubOptions {
  return {
    broker: { type: 'redis', url: redis, channelPrefix: prefix },
    registry: { type: 'redis', url: redis, keyPrefix: prefix, leaseMs: LEASE_MS },
    topics
  }
}

async function join (client: TestClient, topic: string): Promise<void> {
  client.send({ type: 'subscribe', topic, id: `s-${topic}` })
  await client.next('ack')
}

async function members (client: TestClient, topic: string, limit: number): Promise<{ ids: string[], users: Set<string>, clients: number, pages: number }> {
  const ids: string[] = []
  const users = new Set<string>()
  let cursor: unknown
  let clients = 0
  let pages = 0
  do {
    client.send(cursor === undefined ? { type: 'presence', topic, limit } : { type: 'presence', topic, limit, cursor })
    const page = await client.next('presence')
    for (const m of page.members as Array<{ clientId: string, userId: string, info: { name: string } }>) {
      ids.push(m.clientId)
      users.add(`${m.userId}/${m.info.name}`)
    }
    clients = page.clients as number
    cursor = page.cursor
    pages++
  } while (cursor !== undefined)
  return { ids, users, clients, pages }
}

if (url !== null) {
  t.test('three instances, one in its own process: listing, join/leave and a crash', async (t) => {
    const prefix = uniquePrefix('cluster-presence')
    t.teardown(async () => {
      const admin = new Redis(url)
      await deleteKeysUnder(admin, prefix)
      await admin.quit()
    })
    const a = await build(t, { ...options(url, prefix), authenticate })
    const b = await build(t, { ...options(url, prefix), authenticate })
    const c = await HubProcess.start(t, { ...options(url, prefix), userHeader: 'x-user' })

    const watcher = await connect(a.wsUrl, { headers: { 'x-user': 'watcher' } })
    await join(watcher, 'chat:room')
    await watcher.next('join')

    const carol = await connect(c.wsUrl, { headers: { 'x-user': 'carol' } })
    await join(carol, 'chat:room')
    t.match(await watcher.next('join'), { clientId: carol.clientId, userId: 'carol' }, 'a join on the process instance reaches a')
    const aliceOnC = await connect(c.wsUrl, { headers: { 'x-user': 'alice' } })
    await join(aliceOnC, 'chat:room')
    t.match(await watcher.next('join'), { clientId: aliceOnC.clientId, userId: 'alice' })
    const aliceOnB = await connect(b.wsUrl, { headers: { 'x-user': 'alice' } })
    await join(aliceOnB, 'chat:room')
    t.ok(await watcher.nothingBefore('join'), 'alice\'s second connection, on another instance, is not a join')
    const bob = await connect(b.wsUrl, { headers: { 'x-user': 'bob' } })
    await join(bob, 'chat:room')
    t.match(await watcher.next('join'), { clientId: bob.clientId, userId: 'bob' })

    const listed = await members(bob, 'chat:room', 2)
    t.equal(listed.clients, 5)
    t.equal(listed.pages, 3, 'five members in pages of two')
    t.same(listed.ids, [watcher, carol, aliceOnC, aliceOnB, bob].map((x) => x.clientId).sort(), 'every instance\'s members, each once, from b')
    t.same([...listed.users].sort(), ['alice/alice', 'bob/bob', 'carol/carol', 'watcher/watcher'], 'with the info each instance\'s authenticate gave')
    t.same(await (await fetch(`${c.url}/api/topics/chat:room/presence/stats`)).json(), { clients: 5, users: 4 }, 'the process instance counts the whole cluster')

    aliceOnB.close()
    t.ok(await watcher.nothingBefore('leave'), 'alice is still on c')

    // A crash: nothing is released; the lease runs out and a survivor announces.
    const killedAt = Date.now()
    await c.kill()
    const leaves = [await watcher.next('leave', LEASE_MS * 4), await watcher.next('leave', LEASE_MS * 4)]
    const took = Date.now() - killedAt
    t.same(leaves.map((l) => l.userId).sort(), ['alice', 'carol'], 'each user of the crashed instance leaves once')
    t.ok(took <= LEASE_MS + LEASE_MS / 3 + 1000, `announced ${took} ms after the crash (lease ${LEASE_MS} ms)`)
    t.same(await (await fetch(`${a.url}/api/topics/chat:room/presence/stats`)).json(), { clients: 2, users: 2 })
    bob.close()
    t.match(await watcher.next('leave'), { clientId: bob.clientId, userId: 'bob' }, 'a leave on b reaches a')
  })
}
