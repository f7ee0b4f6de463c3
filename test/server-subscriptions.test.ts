/**
 * Server-side subscriptions on one instance: the facade, REST (long ids
 * included), `authenticate`'s topics, the `subscribed`/`unsubscribed`
 * frames, `maxTopicsPerConnection`, and the typed client's topic list.
 */
import t from 'tap'
import { build, connect, until } from './helpers.js'
import { HubClient } from '../lib/client/index.js'
import type { Authenticate, WsHubOptions } from '../lib/index.js'

const authenticate: Authenticate = (request) => {
  const user = request.headers['x-user']
  if (typeof user !== 'string') return null
  const topics = request.headers['x-topics']
  return typeof topics === 'string' ? { userId: user, topics: JSON.parse(topics) as string[] } : { userId: user }
}
const options: WsHubOptions = { authenticate, topics: { namespaces: { notify: { subscribe: 'none', publish: 'none' }, chat: {} } } }
const put = (url: string): Promise<Response> => fetch(url, { method: 'PUT' })
const del = (url: string): Promise<Response> => fetch(url, { method: 'DELETE' })

t.test('the facade subscribes a client and a user; rules do not bind the server; each client is told', async (t) => {
  const { wsUrl, app } = await build(t, options)
  const a1 = await connect(wsUrl, { headers: { 'x-user': 'alice' } })
  const a2 = await connect(wsUrl, { headers: { 'x-user': 'alice' } })
  const bob = await connect(wsUrl, { headers: { 'x-user': 'bob' } })
  t.teardown(() => { a1.close(); a2.close(); bob.close() })

  t.same(await app.wsHub.subscribe({ userId: 'alice' }, 'notify:alice'), { recipients: 2, remoteInstances: 0 })
  for (const c of [a1, a2]) t.match(await c.next('subscribed'), { type: 'subscribed', topic: 'notify:alice' })
  await app.wsHub.publish('notify:alice', 'you have mail')
  for (const c of [a1, a2]) t.match(await c.next('publish'), { message: 'you have mail' })
  t.ok(await bob.nothingBefore('publish'))

  t.same(await app.wsHub.subscribe({ clientId: bob.clientId }, 'chat:x'), { recipients: 1, remoteInstances: 0 })
  t.match(await bob.next('subscribed'), { topic: 'chat:x' })
  t.same(await app.wsHub.subscribe({ clientId: bob.clientId }, 'chat:x'), { recipients: 1, remoteInstances: 0 }, 'idempotent')
  t.same(await app.wsHub.unsubscribe({ clientId: bob.clientId }, 'chat:x'), { recipients: 1, remoteInstances: 0 })
  t.match(await bob.next('unsubscribed'), { topic: 'chat:x' })
  t.ok(await bob.nothingBefore('subscribed'), 'told only of a change')
  t.same((await app.wsHub.get(bob.clientId))?.topics, [])

  t.same(await app.wsHub.subscribe({ clientId: 'nobody' }, 'chat:x'), { recipients: 0, remoteInstances: 0 })
  t.throws(() => app.wsHub.subscribe({ userId: 'alice' }, 'nope:x'), { code: 'WS_HUB_INVALID_ARGUMENT' })
  t.throws(() => app.wsHub.subscribe({ userId: 'alice' }, 'bad topic'), { code: 'WS_HUB_INVALID_ARGUMENT' })
})

t.test('a client unsubscribe is answered with unsubscribed, then the ack', async (t) => {
  const { wsUrl } = await build(t)
  const c = await connect(wsUrl)
  t.teardown(() => c.close())
  c.send({ type: 'unsubscribe', topic: 'x', id: 1 })
  const [first, second] = [await c.next(), await c.next()]
  t.match(first, { type: 'unsubscribed', topic: 'x' })
  t.match(second, { type: 'ack', id: 1 })
})

t.test('REST: PUT and DELETE /connections/:id/topics/:topic and /users/:userId/topics/:topic, 128-character ids included', async (t) => {
  const { wsUrl, url, app } = await build(t, options)
  const longUser = 'u'.repeat(128)
  const long = await connect(wsUrl, { headers: { 'x-user': longUser } })
  const bob = await connect(wsUrl, { headers: { 'x-user': 'bob' } })
  t.teardown(() => { long.close(); bob.close() })

  t.equal((await put(`${url}/api/users/${longUser}/topics/notify:x`)).status, 204)
  t.match(await long.next('subscribed'), { topic: 'notify:x' })
  t.equal((await put(`${url}/api/connections/${bob.clientId}/topics/chat%3Aroom`)).status, 204)
  t.match(await bob.next('subscribed'), { topic: 'chat:room' })
  t.same((await app.wsHub.get(bob.clientId))?.topics, ['chat:room'])
  t.equal((await del(`${url}/api/connections/${bob.clientId}/topics/chat:room`)).status, 204)
  t.match(await bob.next('unsubscribed'), { topic: 'chat:room' })
  t.equal((await del(`${url}/api/users/${longUser}/topics/notify:x`)).status, 204)
  t.match(await long.next('unsubscribed'), { topic: 'notify:x' })

  const missing = await put(`${url}/api/users/nobody/topics/chat:x`)
  t.equal(missing.status, 404)
  t.match(await missing.json(), { code: 'unknown_user' })
  t.equal((await del(`${url}/api/connections/${'c'.repeat(128)}/topics/chat:x`)).status, 404, 'a long unknown id: 404 from the twin route')
  t.equal((await put(`${url}/api/connections/${'c'.repeat(129)}/topics/chat:x`)).status, 400)
  t.equal((await put(`${url}/api/users/bob/topics/nope:x`)).status, 400, 'an undeclared namespace')
  t.equal((await del(`${url}/api/users/${longUser}`)).status, 204, 'the long-id DELETE of a user still closes it')
  t.same(await long.closed, { code: 4000, reason: 'closed by server' })
})

t.test('rest.disable removes the subscription routes', async (t) => {
  const { url, app } = await build(t, { rest: { auth: false, disable: ['subscribeConnection', 'unsubscribeUser'] } })
  t.equal((await put(`${url}/api/connections/x/topics/t`)).status, 404)
  t.equal((await del(`${url}/api/users/x/topics/t`)).status, 404)
  t.equal((await put(`${url}/api/users/x/topics/t`)).status, 404, 'the others remain (404 for an unknown user)')
  t.ok(app.printRoutes().includes('topics/'))
})

t.test('authenticate topics: the connection starts subscribed; bad ones are skipped and logged', async (t) => {
  const logs: string[] = []
  const { wsUrl, app } = await build(t, options, { logger: { level: 'warn', stream: { write: (line: string) => { logs.push(line) } } } })
  const c = await connect(wsUrl, { headers: { 'x-user': 'alice', 'x-topics': JSON.stringify(['notify:alice', 'bad topic', 'nope:x', 7, 'chat:lobby']) } })
  t.teardown(() => c.close())
  t.match(await c.next('subscribed'), { topic: 'notify:alice' })
  t.match(await c.next('subscribed'), { topic: 'chat:lobby' })
  t.same((await app.wsHub.get(c.clientId))?.topics, ['notify:alice', 'chat:lobby'])
  t.ok(logs.some((line) => line.includes('skipped') && line.includes('nope:x')), 'the skipped ones are logged')
})

t.test('maxTopicsPerConnection applies to server-side subscriptions: the connection is skipped', async (t) => {
  const { wsUrl, app } = await build(t, { maxTopicsPerConnection: 1 })
  const c = await connect(wsUrl)
  t.teardown(() => c.close())
  t.same(await app.wsHub.subscribe({ clientId: c.clientId }, 'a'), { recipients: 1, remoteInstances: 0 })
  t.same(await app.wsHub.subscribe({ clientId: c.clientId }, 'b'), { recipients: 0, remoteInstances: 0 }, 'over the limit: not counted')
  t.same((await app.wsHub.get(c.clientId))?.topics, ['a'])
})

t.test('HubClient: server-side subscriptions join its topic list and emit events; only its own are resubscribed', async (t) => {
  const events: string[] = []
  const { wsUrl: openUrl, app: openApp } = await build(t)
  const open = new HubClient(openUrl, { reconnect: { initialDelayMs: 10, maxDelayMs: 20 } })
  t.teardown(() => open.close())
  open.on('subscribed', (frame) => events.push(`+${frame.topic}`))
  open.on('unsubscribed', (frame) => events.push(`-${frame.topic}`))
  const id = await open.connect()
  await open.subscribe('mine')
  await openApp.wsHub.subscribe({ clientId: id }, 'theirs')
  await until(() => open.topics.includes('theirs'), 5000, 'the server-side topic in the list')
  t.same(open.topics.sort(), ['mine', 'theirs'])
  await openApp.wsHub.unsubscribe({ clientId: id }, 'theirs')
  await until(() => !open.topics.includes('theirs'), 5000, 'gone again')
  await openApp.wsHub.subscribe({ clientId: id }, 'theirs')
  await until(() => open.topics.includes('theirs'))
  t.same(events, ['+mine', '+theirs', '-theirs', '+theirs'])

  const reopened = new Promise<{ reconnected: boolean }>((resolve) => open.on('open', resolve))
  await openApp.wsHub.close({ clientId: id }, { code: 4100 })
  t.equal((await reopened).reconnected, true)
  t.same(open.topics, ['mine'], 'its own topic is subscribed again; the server\'s ended with the connection')
  const info = await openApp.wsHub.get(open.clientId ?? '')
  t.same(info?.topics, ['mine'])
})
