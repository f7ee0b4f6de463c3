/**
 * Topics across three instances sharing a real Redis, one of them in its
 * own process (options cross as JSON there, so its schema is plain JSON
 * Schema): server-side subscriptions reach a user's connections on two
 * instances, rules and schemas hold on every instance.
 */
import t from 'tap'
import { Redis } from 'ioredis'
import { build, connect } from './helpers.js'
import { deleteKeysUnder, redisUrl, uniquePrefix } from './helpers/redis-server.js'
import { HubProcess } from './helpers/cluster.js'
import type { Authenticate, WsHubOptions } from '../lib/index.js'

const url = redisUrl(t)

const authenticate: Authenticate = (request) => {
  const user = request.headers['x-user']
  return typeof user === 'string' ? { userId: user } : null
}

const topics: WsHubOptions['topics'] = {
  default: { publish: 'none', schema: { type: 'object', properties: { symbol: { type: 'string' }, price: { type: 'number' } }, required: ['symbol', 'price'] } },
  namespaces: { notify: { subscribe: 'none', publish: 'none' }, chat: { subscribe: 'authenticated', publish: 'subscribers', presence: true, joinLeave: true } }
}

function redisOptions (redis: string, prefix: string): WsHubOptions {
  return {
    broker: { type: 'redis', url: redis, channelPrefix: prefix },
    registry: { type: 'redis', url: redis, keyPrefix: prefix, leaseMs: 1500 },
    topics
  }
}

if (url !== null) {
  t.test('three instances: a user\'s connections on two of them are subscribed from the third, by the facade and REST', async (t) => {
    const prefix = uniquePrefix('cluster-topics')
    t.teardown(async () => {
      const client = new Redis(url)
      await deleteKeysUnder(client, prefix)
      await client.quit()
    })
    const far = await HubProcess.start(t, { ...redisOptions(url, prefix), userHeader: 'x-user' })
    const a = await build(t, { ...redisOptions(url, prefix), authenticate })
    const b = await build(t, { ...redisOptions(url, prefix), authenticate })
    const onFar = await connect(far.wsUrl, { headers: { 'x-user': 'alice' } })
    const onA = await connect(a.wsUrl, { headers: { 'x-user': 'alice' } })
    const bob = await connect(a.wsUrl, { headers: { 'x-user': 'bob' } })
    t.teardown(() => { onFar.close(); onA.close(); bob.close() })

    const report = await b.app.wsHub.subscribe({ userId: 'alice' }, 'notify:alice')
    t.same(report, { recipients: 0, remoteInstances: 2 }, 'b holds none; two instances hold alice')
    t.match(await onFar.next('subscribed'), { topic: 'notify:alice' })
    t.match(await onA.next('subscribed'), { topic: 'notify:alice' })
    t.ok(await bob.nothingBefore('subscribed'))

    // The remote subscribe is handed over, not awaited: a publish once each
    // client was told reaches both.
    await b.app.wsHub.publish('notify:alice', 'hello alice')
    t.match(await onFar.next('publish'), { topic: 'notify:alice', message: 'hello alice' })
    t.match(await onA.next('publish'), { topic: 'notify:alice', message: 'hello alice' })

    const unsub = await fetch(`${b.url}/api/users/alice/topics/notify:alice`, { method: 'DELETE' })
    t.equal(unsub.status, 204)
    t.match(await onFar.next('unsubscribed'), { topic: 'notify:alice' })
    t.match(await onA.next('unsubscribed'), { topic: 'notify:alice' })

    const toFar = await fetch(`${a.url}/api/connections/${onFar.clientId}/topics/chat:room`, { method: 'PUT' })
    t.equal(toFar.status, 204, 'a client held by the process is subscribed through another instance')
    t.match(await onFar.next('subscribed'), { topic: 'chat:room' })
    t.equal((await fetch(`${a.url}/api/users/nobody/topics/chat:room`, { method: 'PUT' })).status, 404, 'no instance holds the user')
  })

  t.test('three instances: rules and the JSON schema hold on every one, the process included', async (t) => {
    const prefix = uniquePrefix('cluster-rules')
    t.teardown(async () => {
      const client = new Redis(url)
      await deleteKeysUnder(client, prefix)
      await client.quit()
    })
    const far = await HubProcess.start(t, { ...redisOptions(url, prefix), userHeader: 'x-user' })
    const a = await build(t, { ...redisOptions(url, prefix), authenticate })
    const reader = await connect(a.wsUrl, { headers: { 'x-user': 'carol' } })
    const writer = await connect(far.wsUrl, { headers: { 'x-user': 'dave' } })
    t.teardown(() => { reader.close(); writer.close() })
    reader.send({ type: 'subscribe', topic: 'prices', id: 1 })
    await reader.next('ack')

    writer.send({ type: 'publish', topic: 'prices', message: { symbol: 'FAKE', price: 0 }, id: 2 })
    t.match(await writer.next('error'), { code: 'forbidden', id: 2 })
    writer.send({ type: 'subscribe', topic: 'notify:dave', id: 3 })
    t.match(await writer.next('error'), { code: 'forbidden', id: 3 })
    writer.send({ type: 'subscribe', topic: 'other:x', id: 4 })
    t.match(await writer.next('error'), { code: 'unknown_namespace', id: 4 })

    const bad = await fetch(`${far.url}/api/topics/prices/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: { symbol: 'X' } }) })
    t.equal(bad.status, 400, 'the process checks the schema on REST')
    const good = await fetch(`${far.url}/api/topics/prices/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: { symbol: 'X', price: 1 } }) })
    t.equal(good.status, 200)
    t.match(await reader.next('publish'), { topic: 'prices', from: 'server', message: { symbol: 'X', price: 1 } })
    t.ok(await reader.nothingBefore('publish'), 'only the valid one crossed')
  })
}
