import t from 'tap'
import Fastify from 'fastify'
import websocket from '@fastify/websocket'
import wsHub, { InvalidArgumentError, MemoryBus, OptionsError, WsHub, type ConnectionInfo } from '../lib/index.js'
import { internalsOf } from '../lib/internals.js'
import { build, connect, handshakeStatus } from './helpers.js'

t.test('fastify.wsHub is the one decorator, a facade with no internals on it', async (t) => {
  const { app } = await build(t)
  t.ok(app.wsHub instanceof WsHub)
  t.notOk(app.hasDecorator('connectionManager'), 'connectionManager is gone')
  t.notOk(app.hasDecorator('messageDispatcher'), 'messageDispatcher is gone')
  for (const name of ['write', 'receive', 'deliverLocal', 'registry', 'broker', 'counters']) {
    t.notOk(name in app.wsHub, `no ${name} on the facade`)
  }
})

t.test('the facade sends, lists, counts and closes', async (t) => {
  const { app, wsUrl } = await build(t, { authenticate: (request) => ({ userId: String((request.query as { u?: string }).u ?? 'anon') }) })
  const alice = await connect(`${wsUrl}?u=alice`)
  const bob = await connect(`${wsUrl}?u=bob`)
  t.teardown(() => { alice.close(); bob.close() })
  bob.send({ type: 'subscribe', topic: 'news', id: 1 })
  await bob.next('ack')

  t.same(await app.wsHub.broadcast('hi'), { recipients: 2, remoteInstances: 0 })
  t.equal((await alice.next('server-broadcast')).message, 'hi')
  t.same(await app.wsHub.sendTo(alice.clientId, 'psst'), { recipients: 1, remoteInstances: 0 })
  t.equal((await alice.next('direct')).message, 'psst')
  t.same(await app.wsHub.sendToUser('bob', 'yo'), { recipients: 1, remoteInstances: 0 })
  t.equal((await bob.next('direct')).user, 'bob')
  t.same(await app.wsHub.publish('news', { n: 1 }), { recipients: 1, remoteInstances: 0 })
  t.same((await bob.next('publish')).message, { n: 1 })

  t.equal(await app.wsHub.count(), 2)
  const page = await app.wsHub.list({ limit: 10 })
  t.equal(page.count, 2)
  t.same(page.connections.map((c) => c.userId).sort(), ['alice', 'bob'])
  const info = await app.wsHub.get(bob.clientId)
  t.same(info?.topics, ['news'])
  t.equal(await app.wsHub.get('nobody'), null)
  t.equal(app.wsHub.stats().connections, 2)

  t.same(await app.wsHub.close({ userId: 'alice' }, { code: 4001, reason: 'bye' }), { recipients: 1, remoteInstances: 0 })
  t.same(await alice.closed, { code: 4001, reason: 'bye' })
})

t.test('the facade refuses arguments it cannot use, with a coded error', async (t) => {
  const { app } = await build(t)
  t.throws(() => app.wsHub.publish('not a topic!', 1), InvalidArgumentError)
  t.throws(() => app.wsHub.sendTo('', 1), { code: 'WS_HUB_INVALID_ARGUMENT' })
  t.throws(() => app.wsHub.close({ clientId: 'x' }, { code: 1006 }), { code: 'WS_HUB_INVALID_ARGUMENT' })
  t.throws(() => app.wsHub.close({ clientId: 'x' }, { reason: 'x'.repeat(200) }), InvalidArgumentError)
})

t.test('connect and disconnect events carry the connection', async (t) => {
  const { app, wsUrl } = await build(t)
  const connected: ConnectionInfo[] = []
  const gone: Array<{ id: string, code: number }> = []
  app.wsHub.on('connect', (info) => connected.push(info))
  const disconnected = new Promise<void>((resolve) => {
    app.wsHub.on('disconnect', (info, details) => { gone.push({ id: info.id, code: details.code }); resolve() })
  })
  const client = await connect(wsUrl)
  t.equal(connected[0]?.id, client.clientId)
  client.socket.close(4321, 'done')
  await disconnected
  t.same(gone, [{ id: client.clientId, code: 4321 }])
})

t.test('topic interest: an instance with no subscriber receives none of the topic\'s envelopes', async (t) => {
  const bus = new MemoryBus()
  const a = await build(t, { broker: { type: 'memory', bus } })
  const b = await build(t, { broker: { type: 'memory', bus } })
  const onB = await connect(b.wsUrl)
  t.teardown(() => onB.close())
  const before = b.app.wsHub.stats().remoteEnvelopesIn
  await a.app.wsHub.publish('nobody-on-b', 1)
  // The sentinel: a broadcast b does receive; anything published before it has arrived by then.
  await a.app.wsHub.broadcast('sentinel')
  await onB.next('server-broadcast')
  t.equal(b.app.wsHub.stats().remoteEnvelopesIn - before, 1, 'only the broadcast reached b')

  onB.send({ type: 'subscribe', topic: 'now-on-b', id: 1 })
  await onB.next('ack')
  await a.app.wsHub.publish('now-on-b', 2)
  t.equal((await onB.next('publish')).message, 2, 'once subscribed (acked), b receives the topic')
  t.equal(internalsOf(b.app.wsHub).connections.subscribers('now-on-b').size, 1)
})

t.test('an app that registered @fastify/websocket itself keeps it, when compatible', async (t) => {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await app.register(websocket, { options: { maxPayload: 64 * 1024 } })
  app.register(async (scope) => {
    scope.get('/own', { websocket: true }, (socket) => { socket.send('own route') })
  })
  await app.register(wsHub, { rest: { auth: false }, heartbeatIntervalMs: 0 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  const client = await connect(`ws://127.0.0.1:${address.port}/ws`)
  t.ok(client.clientId, 'the hub route works')
  client.close()
})

t.test('an incompatible @fastify/websocket registration is refused with the reason', async (t) => {
  const big = Fastify({ logger: false })
  t.teardown(() => big.close())
  await big.register(websocket)
  big.register(wsHub, { rest: { auth: false } })
  await t.rejects(async () => await big.ready(), { code: 'WS_HUB_INVALID_OPTION', message: /maxPayload/ })

  const chooser = Fastify({ logger: false })
  t.teardown(() => chooser.close())
  await chooser.register(websocket, { options: { maxPayload: 1024, handleProtocols: () => false } })
  chooser.register(wsHub, { rest: { auth: false } })
  await t.rejects(async () => await chooser.ready(), OptionsError)
})

t.test('the app\'s own hooks and config on the WebSocket route run after admission', async (t) => {
  const seen: string[] = []
  const { app, wsUrl } = await build(t, {
    maxConnectionsPerIp: 3,
    route: {
      config: { tenant: 'acme' },
      onRequest: async (request, reply) => {
        seen.push(String((request.routeOptions.config as { tenant?: string }).tenant ?? ''))
        if ((request.query as { deny?: string }).deny === '1') await reply.code(403).send({ code: 'denied_by_app' })
      }
    }
  })
  const ok = await connect(wsUrl)
  t.teardown(() => ok.close())
  t.same(seen, ['acme'])
  for (let n = 0; n < 5; n++) {
    const denied = await handshakeStatus(`${wsUrl}?deny=1`)
    t.equal(denied.status, 403)
  }
  // Refused by the app's hook five times with a limit of three: the slots went back each time.
  t.equal(await internalsOf(app.wsHub).cluster.limiter.ipCount('127.0.0.1'), 1)
})
