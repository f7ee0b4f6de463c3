/**
 * Namespaces, topic rules, payload schemas and `authorize`, on one
 * instance: every rule and action allowed and refused, and a refusal
 * changes nothing.
 */
import t from 'tap'
import Type from 'typebox'
import { build, connect, type TestClient } from './helpers.js'
import { InvalidArgumentError, InvalidMessageError, type Authenticate, type AuthorizeRequest, type WsHubOptions } from '../lib/index.js'
import { TopicPolicy } from '../lib/topics/topic-policy.js'
import { normalizeOptions } from '../lib/options/hub-options.js'

// The user is the x-user header; anonymous tests build a hub without authenticate.
const byHeader: Authenticate = (request) => {
  const user = request.headers['x-user']
  return typeof user === 'string' ? { userId: user } : null
}
const Tick = Type.Object({ symbol: Type.String(), price: Type.Number() }, { additionalProperties: false })

const topics: WsHubOptions['topics'] = {
  default: { subscribe: 'all', publish: 'none', schema: Tick },
  namespaces: {
    chat: { subscribe: 'authenticated', publish: 'subscribers', presence: true, joinLeave: true },
    user: { subscribe: 'owner', publish: 'none' },
    open: {},
    auth: { subscribe: 'all', publish: 'authenticated' },
    closed: { subscribe: 'none' }
  }
}

async function error (client: TestClient, id: number): Promise<{ code: unknown, message: unknown }> {
  const frame = await client.next('error')
  t.equal(frame.id, id, 'the error carries the frame\'s id')
  return { code: frame.code, message: frame.message }
}

t.test('rules compile once; rulesFor gives presence and joinLeave, null for an undeclared namespace', async (t) => {
  const policy = new TopicPolicy(normalizeOptions({ topics }).topics)
  t.match(policy.rulesFor('chat:room-1'), { namespace: 'chat', presence: true, joinLeave: true, subscribe: 'authenticated' })
  t.match(policy.rulesFor('prices'), { namespace: null, presence: false, joinLeave: false, publish: 'none' })
  t.match(policy.rulesFor('open:x'), { subscribe: 'all', publish: 'all', presence: false }, 'defaults filled in')
  t.equal(policy.rulesFor('nope:x'), null)
  const open = new TopicPolicy(normalizeOptions({}).topics)
  t.match(open.rulesFor('anything:at-all'), { subscribe: 'all', publish: 'all' }, 'without topics, everything is open')
  t.equal(open.invalidMessage('x', { whatever: true }), null)
  t.throws(() => normalizeOptions({ topics: { namespaces: { chat: { subscribe: 'everyone' as 'all' } } } }), /topics\.namespaces\.chat\.subscribe/)
  t.throws(() => normalizeOptions({ topics: { default: { recovery: 10 } as unknown as { subscribe: 'all' } } }), /not a known option/)
})

t.test('subscribe rules: all, authenticated, owner, none, unknown namespace', async (t) => {
  const { wsUrl, app } = await build(t, { topics, authenticate: byHeader })
  const alice = await connect(wsUrl, { headers: { 'x-user': 'alice' } })
  const bob = await connect(wsUrl, { headers: { 'x-user': 'bob' } })
  t.teardown(() => { alice.close(); bob.close() })

  alice.send({ type: 'subscribe', topic: 'prices', id: 1 })
  t.match(await alice.next('subscribed'), { topic: 'prices' }, 'subscribed comes first')
  t.equal((await alice.next('ack')).id, 1, 'then the ack')

  alice.send({ type: 'subscribe', topic: 'user:alice', id: 2 })
  t.match(await alice.next('subscribed'), { topic: 'user:alice' })
  bob.send({ type: 'subscribe', topic: 'user:alice', id: 3 })
  t.match(await error(bob, 3), { code: 'forbidden' }, 'owner: only alice')
  bob.send({ type: 'subscribe', topic: 'user:alicex', id: 4 })
  t.match(await error(bob, 4), { code: 'forbidden' })

  alice.send({ type: 'subscribe', topic: 'closed:x', id: 5 })
  t.match(await error(alice, 5), { code: 'forbidden', message: /server subscribes/ })
  alice.send({ type: 'subscribe', topic: 'nope:x', id: 6 })
  t.match(await error(alice, 6), { code: 'unknown_namespace' })

  const info = await app.wsHub.get(bob.clientId)
  t.same(info?.topics, [], 'a refusal changes nothing')
})

t.test('authenticated rules refuse anonymous clients', async (t) => {
  const { wsUrl } = await build(t, { topics })
  const anon = await connect(wsUrl)
  t.teardown(() => anon.close())
  anon.send({ type: 'subscribe', topic: 'chat:room', id: 1 })
  t.match(await error(anon, 1), { code: 'forbidden', message: /authenticated/ })
  anon.send({ type: 'subscribe', topic: 'user:x', id: 2 })
  t.match(await error(anon, 2), { code: 'forbidden' })
  anon.send({ type: 'publish', topic: 'auth:x', message: 1, id: 3 })
  t.match(await error(anon, 3), { code: 'forbidden' })
  anon.send({ type: 'publish', topic: 'open:x', message: 1, id: 4 })
  t.equal((await anon.next('ack')).id, 4, 'open: anyone publishes')
})

t.test('publish rules: none, subscribers, authenticated; schema refusals on the client path', async (t) => {
  const { wsUrl } = await build(t, { topics, authenticate: byHeader })
  const alice = await connect(wsUrl, { headers: { 'x-user': 'alice' } })
  const bob = await connect(wsUrl, { headers: { 'x-user': 'bob' } })
  t.teardown(() => { alice.close(); bob.close() })
  alice.send({ type: 'subscribe', topic: 'chat:room', id: 1 })
  await alice.next('ack')

  bob.send({ type: 'publish', topic: 'chat:room', message: 'hi', id: 2 })
  t.match(await error(bob, 2), { code: 'forbidden', message: /subscribers/ })
  t.ok(await alice.nothingBefore('publish'), 'a refused publish reaches nobody')
  alice.send({ type: 'publish', topic: 'chat:room', message: 'hi', id: 3 })
  t.match(await alice.next('publish'), { topic: 'chat:room', message: 'hi', fromUser: 'alice' })

  bob.send({ type: 'publish', topic: 'prices', message: { symbol: 'FAKE', price: 1 }, id: 4 })
  t.match(await error(bob, 4), { code: 'forbidden', message: /only the server/ })
  bob.send({ type: 'publish', topic: 'auth:x', message: 1, id: 5 })
  t.equal((await bob.next('ack')).id, 5, 'authenticated: bob may')
})

t.test('a schema is met on every publish path: client, REST, facade', async (t) => {
  const { wsUrl, url, app } = await build(t, { topics: { namespaces: { ticks: { schema: Tick } } } })
  const client = await connect(wsUrl)
  t.teardown(() => client.close())
  client.send({ type: 'subscribe', topic: 'ticks:x', id: 1 })
  await client.next('ack')

  client.send({ type: 'publish', topic: 'ticks:x', message: { symbol: 'A', price: 'high' }, id: 2 })
  t.match(await error(client, 2), { code: 'invalid_message', message: /price/ })
  client.send({ type: 'publish', topic: 'ticks:x', message: { symbol: 'A', price: 1 }, id: 3 })
  t.match(await client.next('publish'), { message: { symbol: 'A', price: 1 } })

  const bad = await fetch(`${url}/api/topics/ticks:x/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: { symbol: 1, price: 1 } }) })
  t.equal(bad.status, 400)
  t.match(await bad.json(), { statusCode: 400, code: 'invalid_message', message: /symbol/ })
  const good = await fetch(`${url}/api/topics/ticks:x/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: { symbol: 'B', price: 2 } }) })
  t.equal(good.status, 200)
  t.match(await client.next('publish'), { from: 'server', message: { symbol: 'B' } })

  t.throws(() => app.wsHub.publish('ticks:x', { symbol: 'C' }), InvalidMessageError)
  t.throws(() => app.wsHub.publish('ticks:x', { symbol: 'C' }), { code: 'WS_HUB_INVALID_MESSAGE', message: /price/ })
  t.throws(() => app.wsHub.publish('nope:x', 1), InvalidArgumentError, 'an undeclared namespace')
  t.ok(await client.nothingBefore('publish'), 'nothing refused was delivered')
})

t.test('authorize runs after the rules: allow, deny, throw', async (t) => {
  const seen: AuthorizeRequest[] = []
  const authorize = async (request: AuthorizeRequest): Promise<boolean> => {
    seen.push(request)
    if (request.topic === 'team:7') return request.client.userId === 'alice'
    if (request.topic === 'team:boom') throw new Error('authorize bug')
    return request.action !== 'direct'
  }
  const logs: string[] = []
  const { wsUrl } = await build(t, { authorize, authenticate: byHeader, topics: { namespaces: { team: {}, closed: { subscribe: 'none' } } } }, {
    logger: { level: 'error', stream: { write: (line: string) => { logs.push(line) } } }
  })
  const alice = await connect(wsUrl, { headers: { 'x-user': 'alice' } })
  const bob = await connect(wsUrl, { headers: { 'x-user': 'bob' } })
  t.teardown(() => { alice.close(); bob.close() })

  alice.send({ type: 'subscribe', topic: 'team:7', id: 1 })
  t.equal((await alice.next('ack')).id, 1)
  bob.send({ type: 'subscribe', topic: 'team:7', id: 2 })
  t.match(await error(bob, 2), { code: 'forbidden', message: /not authorized/ })
  bob.send({ type: 'subscribe', topic: 'team:boom', id: 3 })
  t.match(await error(bob, 3), { code: 'forbidden' })
  bob.send({ type: 'subscribe', topic: 'team:boom', id: 4 })
  t.match(await error(bob, 4), { code: 'forbidden' })
  t.equal(logs.filter((line) => line.includes('authorize threw')).length, 1, 'a throw is logged once, rate-limited')
  bob.send({ type: 'direct', target: alice.clientId, message: 'x', id: 5 })
  t.match(await error(bob, 5), { code: 'forbidden' })
  bob.send({ type: 'broadcast', message: 'hi', id: 6 })
  t.equal((await bob.next('ack')).id, 6)
  alice.send({ type: 'subscribe', topic: 'closed:x', id: 7 })
  t.match(await error(alice, 7), { code: 'forbidden' })

  t.notOk(seen.some((r) => r.topic === 'closed:x'), 'not asked when a rule already refused')
  t.match(seen.find((r) => r.action === 'broadcast'), { action: 'broadcast', client: { id: bob.clientId, userId: 'bob' } })
  t.notOk('topic' in (seen.find((r) => r.action === 'broadcast') ?? {}), 'no topic for broadcast')
})

t.test('clientBroadcast and clientDirect off: forbidden; the server still sends', async (t) => {
  const { wsUrl, app } = await build(t, { clientBroadcast: false, clientDirect: false })
  const a = await connect(wsUrl)
  const b = await connect(wsUrl)
  t.teardown(() => { a.close(); b.close() })
  a.send({ type: 'broadcast', message: 'hi', id: 1 })
  t.match(await error(a, 1), { code: 'forbidden' })
  a.send({ type: 'direct', target: b.clientId, message: 'hi', id: 2 })
  t.match(await error(a, 2), { code: 'forbidden' })
  t.ok(await b.nothingBefore('message'))
  await app.wsHub.broadcast('from the server')
  t.match(await b.next('server-broadcast'), { message: 'from the server' })
})

t.test('without topics, everything stays allowed (the seed protocol)', async (t) => {
  const { wsUrl } = await build(t)
  const a = await connect(wsUrl)
  t.teardown(() => a.close())
  for (const [i, topic] of ['prices', 'chat:1', 'any:thing'].entries()) {
    a.send({ type: 'subscribe', topic, id: i })
    t.equal((await a.next('ack')).id, i)
    a.send({ type: 'publish', topic, message: { any: 'thing' } })
    t.match(await a.next('publish'), { topic })
  }
})
