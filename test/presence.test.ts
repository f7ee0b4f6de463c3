/**
 * Presence on one instance: listing with paging and counts, join and leave
 * per user (or per connection), refusals, the REST routes and the client.
 */
import t from 'tap'
import { WebSocket } from 'ws'
import { build, connect, type TestClient } from './helpers.js'
import { bearerToken, type Authenticate, type WsHubOptions } from '../lib/index.js'
import { HubClient, type WebSocketConstructor } from '../lib/client/index.js'

const authenticate: Authenticate = (request) => {
  // A header for the test clients, a bearer token for HubClient (as a browser sends it).
  const user = request.headers['x-user'] ?? bearerToken(request) ?? undefined
  if (typeof user !== 'string') return null
  const big = request.headers['x-big'] === '1'
  return { userId: user, token: 'secret', info: big ? { blob: 'x'.repeat(2000) } : { name: user.toUpperCase() } }
}

const topics: WsHubOptions['topics'] = {
  default: { presence: false },
  namespaces: {
    chat: { presence: true, joinLeave: true },
    quiet: { presence: true },
    news: {}
  }
}

const as = async (url: string, user: string, headers: Record<string, string> = {}): Promise<TestClient> =>
  connect(url, { headers: { 'x-user': user, ...headers } })

async function subscribe (client: TestClient, topic: string, id: number): Promise<void> {
  client.send({ type: 'subscribe', topic, id })
  await client.next('ack')
}

t.test('a presence topic lists its members with info, never the token, and counts users once', async (t) => {
  const hub = await build(t, { authenticate, topics })
  const alice1 = await as(hub.wsUrl, 'alice')
  const alice2 = await as(hub.wsUrl, 'alice')
  const bob = await as(hub.wsUrl, 'bob')
  for (const [n, c] of [alice1, alice2, bob].entries()) await subscribe(c, 'chat:lobby', n)

  bob.send({ type: 'presence', topic: 'chat:lobby', id: 'p1' })
  const page = await bob.next('presence')
  t.equal(page.id, 'p1', 'the page is the answer and carries the id')
  t.equal(page.clients, 3)
  t.equal(page.users, 2)
  t.equal(page.cursor, undefined, 'one page')
  const members = page.members as Array<Record<string, unknown>>
  t.same(members.map((m) => m.clientId), [alice1.clientId, alice2.clientId, bob.clientId].sort())
  t.same(members.find((m) => m.clientId === bob.clientId), { clientId: bob.clientId, userId: 'bob', info: { name: 'BOB' } })
  t.notOk(JSON.stringify(page).includes('secret'), 'the identity\'s other claims stay on the server')
  t.ok(await bob.nothingBefore('ack'), 'no separate ack')

  const big = await as(hub.wsUrl, 'carol', { 'x-big': '1' })
  await subscribe(big, 'chat:lobby', 9)
  const listed = await hub.app.wsHub.presence('chat:lobby', { limit: 10 })
  t.same(listed.members.find((m) => m.clientId === big.clientId), { clientId: big.clientId, userId: 'carol' }, 'an info over 1024 bytes is left out')
})

t.test('pages follow the cursor; limit 0 answers the counts alone', async (t) => {
  const hub = await build(t, { authenticate, topics })
  const clients: TestClient[] = []
  for (let n = 0; n < 7; n++) {
    const c = await as(hub.wsUrl, `u${n % 3}`)
    await subscribe(c, 'quiet:room', n)
    clients.push(c)
  }
  const seen: string[] = []
  let cursor: unknown
  let pages = 0
  do {
    clients[0]?.send(cursor === undefined ? { type: 'presence', topic: 'quiet:room', limit: 3 } : { type: 'presence', topic: 'quiet:room', limit: 3, cursor })
    const page = await clients[0]!.next('presence')
    seen.push(...(page.members as Array<{ clientId: string }>).map((m) => m.clientId))
    cursor = page.cursor
    pages++
  } while (cursor !== undefined)
  t.equal(pages, 3)
  t.same(seen, clients.map((c) => c.clientId).sort())
  clients[1]?.send({ type: 'presence', topic: 'quiet:room', limit: 0 })
  t.match(await clients[1]!.next('presence'), { members: [], clients: 7, users: 3 })
})

t.test('a topic without presence answers presence_off; a bad request is invalid_message', async (t) => {
  const hub = await build(t, { authenticate, topics })
  const alice = await as(hub.wsUrl, 'alice')
  await subscribe(alice, 'news:today', 1)
  alice.send({ type: 'presence', topic: 'news:today', id: 2 })
  t.match(await alice.next('error'), { code: 'presence_off', id: 2 })
  alice.send({ type: 'presence', topic: 'plain', id: 3 })
  t.match(await alice.next('error'), { code: 'presence_off', id: 3 })
  alice.send({ type: 'presence', topic: 'chat:x', limit: 5000, id: 4 })
  t.match(await alice.next('error'), { code: 'invalid_message', id: 4 })
  await t.rejects(hub.app.wsHub.presence('news:today'), { name: 'PresenceOffError', code: 'WS_HUB_PRESENCE_OFF' })
})

t.test('join and leave are per user: a second tab is silent, the last tab to go says leave', async (t) => {
  const hub = await build(t, { authenticate, topics })
  const watcher = await as(hub.wsUrl, 'watcher')
  await subscribe(watcher, 'chat:lobby', 1)
  t.match(await watcher.next('join'), { topic: 'chat:lobby', clientId: watcher.clientId, userId: 'watcher' }, 'a joiner hears its own join')

  const tab1 = await as(hub.wsUrl, 'alice')
  await subscribe(tab1, 'chat:lobby', 2)
  t.match(await watcher.next('join'), { topic: 'chat:lobby', clientId: tab1.clientId, userId: 'alice' })
  const tab2 = await as(hub.wsUrl, 'alice')
  await subscribe(tab2, 'chat:lobby', 3)
  t.ok(await watcher.nothingBefore('join'), 'alice\'s second tab is not a join')

  tab1.send({ type: 'unsubscribe', topic: 'chat:lobby', id: 4 })
  await tab1.next('ack')
  t.ok(await watcher.nothingBefore('leave'), 'alice is still there in tab2')
  tab2.close()
  t.match(await watcher.next('leave'), { topic: 'chat:lobby', clientId: tab2.clientId, userId: 'alice' }, 'a disconnect leaves every topic')

  const quiet = await as(hub.wsUrl, 'bob')
  await subscribe(quiet, 'quiet:room', 5)
  await subscribe(watcher, 'quiet:room', 6)
  quiet.close()
  await quiet.closed
  t.ok(await watcher.nothingBefore('leave'), 'no join or leave without joinLeave')
  t.ok(await watcher.nothingBefore('join'))
})

t.test('joinLeave: \'connection\' announces every connection, a second tab included', async (t) => {
  const hub = await build(t, { authenticate, topics: { namespaces: { room: { joinLeave: 'connection' } } } })
  const watcher = await as(hub.wsUrl, 'watcher')
  await subscribe(watcher, 'room:1', 1)
  await watcher.next('join')
  const tab1 = await as(hub.wsUrl, 'alice')
  const tab2 = await as(hub.wsUrl, 'alice')
  await subscribe(tab1, 'room:1', 2)
  t.match(await watcher.next('join'), { clientId: tab1.clientId, userId: 'alice' })
  await subscribe(tab2, 'room:1', 3)
  t.match(await watcher.next('join'), { clientId: tab2.clientId, userId: 'alice' }, 'the second tab is its own join')
  tab1.close()
  t.match(await watcher.next('leave'), { clientId: tab1.clientId, userId: 'alice' }, 'and its own leave, though alice is still there')
})

t.test('REST: the presence page and the stats, behind rest.auth, and rest.disable names them', async (t) => {
  const hub = await build(t, { authenticate, topics, rest: { auth: (request) => request.headers['x-key'] === 'k' } })
  const alice = await as(hub.wsUrl, 'alice')
  const bob = await as(hub.wsUrl, 'bob')
  await subscribe(alice, 'chat:lobby', 1)
  await subscribe(bob, 'chat:lobby', 2)
  const get = async (path: string, key = 'k'): Promise<Response> => fetch(`${hub.url}/api${path}`, { headers: { 'x-key': key } })

  t.equal((await get('/topics/chat:lobby/presence', 'wrong')).status, 401)
  const page = await (await get('/topics/chat:lobby/presence?limit=1')).json() as Record<string, unknown>
  t.equal(page.clients, 2)
  t.equal(page.users, 2)
  t.equal((page.members as unknown[]).length, 1)
  t.equal(typeof page.cursor, 'string')
  const next = await (await get(`/topics/chat:lobby/presence?limit=1&cursor=${String(page.cursor)}`)).json() as Record<string, unknown>
  t.equal((next.members as unknown[]).length, 1)
  t.equal(next.cursor, undefined)
  t.same(await (await get('/topics/chat:lobby/presence/stats')).json(), { clients: 2, users: 2 })
  const off = await get('/topics/news:x/presence/stats')
  t.equal(off.status, 404)
  t.match(await off.json(), { code: 'presence_off' })
  t.equal((await get('/topics/chat:lobby/presence?limit=5000')).status, 400)

  const closed = await build(t, { authenticate, topics, rest: { auth: false, disable: ['presence', 'presenceStats'] } })
  t.equal((await fetch(`${closed.url}/api/topics/chat:lobby/presence`)).status, 404)
  t.equal((await fetch(`${closed.url}/api/topics/chat:lobby/presence/stats`)).status, 404)
})

t.test('HubClient: presence() pages, and join and leave arrive as events', async (t) => {
  const hub = await build(t, { authenticate, topics })
  const client = new HubClient(hub.wsUrl, { WebSocket: WebSocket as unknown as WebSocketConstructor, token: 'dora', pingIntervalMs: 0 })
  t.teardown(() => client.close())
  const joins: string[] = []
  const leaves: string[] = []
  client.on('join', (frame) => joins.push(`${frame.userId ?? 'anon'}`))
  client.on('leave', (frame) => leaves.push(`${frame.userId ?? 'anon'}`))
  await client.connect()
  await client.subscribe('chat:lobby')
  const other = await as(hub.wsUrl, 'eve')
  await subscribe(other, 'chat:lobby', 1)
  const page = await client.presence('chat:lobby', { limit: 1 })
  t.equal(page.clients, 2)
  t.equal(page.members.length, 1)
  t.type(page.cursor, 'string')
  const rest = await client.presence('chat:lobby', { limit: 1, cursor: page.cursor })
  t.equal(rest.cursor, undefined)
  other.close()
  await new Promise<void>((resolve) => { const stop = client.on('leave', () => { stop(); resolve() }) })
  t.same(joins, ['dora', 'eve'])
  t.same(leaves, ['eve'])
  await t.rejects(client.presence('news:x'), { code: 'presence_off' })
})
