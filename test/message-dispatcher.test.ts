import t from 'tap'
import type { WebSocket } from 'ws'
import { Connection } from '../lib/connections/connection.js'
import { ConnectionManager } from '../lib/connections/connection-manager.js'
import { MessageDispatcher } from '../lib/dispatch/message-dispatcher.js'
import { MemoryDirectory } from '../lib/cluster/memory/memory-directory.js'
import type { Transport } from '../lib/cluster/transport.js'
import type { DeliverEnvelope, Envelope } from '../lib/cluster/envelope.js'
import { QueryTimeoutError } from '../lib/errors.js'
import { FakeSocket, recordingLogger } from './fakes/fake-socket.js'
import { realPeer } from './helpers/real-peer.js'

class FakeTransport implements Transport {
  readonly published: Array<{ envelope: Envelope, options: { instances?: readonly string[] } }> = []
  fail = false
  async start (): Promise<void> {}
  async publish (envelope: Envelope, to?: readonly string[]): Promise<void> {
    if (this.fail) throw new Error('broker down')
    this.published.push({ envelope, options: to === undefined ? {} : { instances: [...to] } })
  }

  async subscribe (): Promise<void> {}
  async unsubscribe (): Promise<void> {}
  state (): 'up' { return 'up' }
  async close (): Promise<void> {}
}

const entry = (id: string, instanceId: string, userId: string | null = null) => ({ id, ip: 'x', userId, connectedAt: '', instanceId })

async function setup (withBroker = true, queryTimeoutMs = 1000) {
  const registry = new MemoryDirectory()
  await registry.join('i1')
  const { log, lines } = recordingLogger()
  const connections = new ConnectionManager({ instanceId: 'i1', maxBufferedBytes: 1 << 20, log })
  const broker = new FakeTransport()
  const dispatcher = new MessageDispatcher({ instanceId: 'i1', connections, directory: registry, transport: withBroker ? broker : null, log, conflateMs: 100, queryTimeoutMs })
  const sockets = new Map<string, FakeSocket>()
  const add = (id: string, userId: string | null = null) => {
    const socket = new FakeSocket()
    sockets.set(id, socket)
    const connection = new Connection(id, '1.1.1.1', userId === null ? null : { userId }, socket as unknown as WebSocket)
    connections.add(connection)
    return connection
  }
  return { registry, connections, broker, dispatcher, sockets, add, lines }
}

t.test('broadcast: serialized once, written to all, handed to the broker', async (t) => {
  const { dispatcher, sockets, add, broker, connections } = await setup()
  add('a'); add('b')
  const seen: Buffer[] = []
  const write = connections.write.bind(connections)
  connections.write = (c, data) => { seen.push(data); return write(c, data) }
  const report = await dispatcher.broadcast({ x: 1 })
  t.same(report, { recipients: 2, remoteInstances: 0 })
  t.equal(seen[0], seen[1], 'the same Buffer for every recipient')
  const frame = sockets.get('a')?.frames()[0]
  t.match(frame, { type: 'server-broadcast', message: { x: 1 }, timestamp: /Z$/ })
  t.equal(broker.published.length, 1)
  t.equal(broker.published[0]?.envelope.origin, 'i1')
  t.equal((broker.published[0]?.envelope as DeliverEnvelope).frame, sockets.get('a')?.sent[0], 'the broker carries the exact bytes')
  t.same(broker.published[0]?.options, {})
})

t.test('without a broker nothing is published and local delivery works', async (t) => {
  const { dispatcher, add } = await setup(false)
  add('a')
  t.same(await dispatcher.publish('t', 1), { recipients: 0, remoteInstances: 0 })
  t.same(await dispatcher.broadcast(1), { recipients: 1, remoteInstances: 0 })
})

t.test('sendTo a local client does not touch the broker', async (t) => {
  const { dispatcher, add, sockets, broker } = await setup()
  add('a'); add('b')
  t.same(await dispatcher.sendTo('b', 'hi'), { recipients: 1, remoteInstances: 0 })
  t.match(sockets.get('b')?.frames()[0], { type: 'direct', from: 'server', message: 'hi' })
  t.equal(sockets.get('a')?.sent.length, 0)
  t.equal(broker.published.length, 0)
})

t.test('sendTo a client on another instance goes only to that instance', async (t) => {
  const { dispatcher, registry, broker } = await setup()
  await registry.join('i2')
  await registry.add(entry('far', 'i2'))
  t.same(await dispatcher.sendTo('far', 'hi'), { recipients: 0, remoteInstances: 1 })
  t.same(broker.published[0]?.options, { instances: ['i2'] })
  t.same((broker.published[0]?.envelope as DeliverEnvelope).target, { kind: 'client', id: 'far' })
})

t.test('sendTo an unknown client reports nobody', async (t) => {
  const { dispatcher, broker } = await setup()
  t.same(await dispatcher.sendTo('ghost', 'hi'), { recipients: 0, remoteInstances: 0 })
  t.equal(broker.published.length, 0)
})

t.test('sendToUser reaches every local connection of the user and the instances holding others', async (t) => {
  const { dispatcher, add, sockets, registry, broker } = await setup()
  add('a', 'alice'); add('b', 'alice'); add('c', 'bob')
  await registry.join('i2')
  await registry.add(entry('far', 'i2', 'alice'))
  t.same(await dispatcher.sendToUser('alice', 'yo'), { recipients: 2, remoteInstances: 1 })
  t.match(sockets.get('a')?.frames()[0], { type: 'direct', from: 'server', user: 'alice', message: 'yo' })
  t.equal(sockets.get('c')?.sent.length, 0)
  t.same(broker.published[0]?.options, { instances: ['i2'] })
})

t.test('publish reaches only subscribers; remote instances are counted from the registry', async (t) => {
  const { dispatcher, add, sockets, connections, registry } = await setup()
  const a = add('a'); add('b')
  connections.subscribe(a, 'prices')
  await registry.join('i2')
  t.same(await dispatcher.publish('prices', 3), { recipients: 1, remoteInstances: 1 })
  t.match(sockets.get('a')?.frames()[0], { type: 'publish', topic: 'prices', from: 'server', message: 3 })
  t.equal(sockets.get('b')?.sent.length, 0)
})

t.test('a broker failure is counted and logged; local clients still get the message', async (t) => {
  const { dispatcher, add, sockets, broker, lines } = await setup()
  add('a')
  broker.fail = true
  const report = await dispatcher.broadcast('x')
  t.equal(report.recipients, 1)
  t.equal(sockets.get('a')?.sent.length, 1)
  t.equal(dispatcher.counters.brokerPublishFailures, 1)
  t.ok(lines.some((l) => l.level === 'error' && String(l.args[1]).includes('cross-instance delivery failed')))
})

t.test('receive delivers remote envelopes byte for byte and ignores its own', async (t) => {
  const { dispatcher, add, sockets } = await setup()
  add('a')
  const frame = '{"type":"message","from":"far","message":"é","timestamp":"2020-01-01T00:00:00.000Z"}'
  dispatcher.receive({ type: 'deliver', origin: 'i2', target: { kind: 'all' }, frame })
  dispatcher.receive({ type: 'deliver', origin: 'i1', target: { kind: 'all' }, frame })
  t.same(sockets.get('a')?.sent, [frame])
})

t.test('exclude skips one local client', async (t) => {
  const { dispatcher, add, sockets } = await setup(false)
  const a = add('a'); add('b')
  await dispatcher.send({ kind: 'all' }, { type: 'system', message: 'x' }, { exclude: a })
  t.equal(sockets.get('a')?.sent.length, 0)
  t.equal(sockets.get('b')?.sent.length, 1)
})

t.test('a registry failure after local delivery is counted, not thrown', async (t) => {
  const { dispatcher, add, sockets, registry } = await setup()
  add('a')
  registry.instances = async () => { throw new Error('redis down') }
  registry.locate = async () => { throw new Error('redis down') }
  t.same(await dispatcher.broadcast('x'), { recipients: 1, remoteInstances: 0 })
  t.same(await dispatcher.sendTo('elsewhere', 'x'), { recipients: 0, remoteInstances: 0 })
  t.equal(sockets.get('a')?.sent.length, 1)
  t.equal(dispatcher.counters.brokerPublishFailures, 2)
})

t.test('failure logging is throttled during an outage', async (t) => {
  const { dispatcher, add, broker, lines } = await setup()
  add('a')
  broker.fail = true
  for (let n = 0; n < 50; n++) await dispatcher.broadcast(n)
  t.equal(dispatcher.counters.brokerPublishFailures, 50)
  t.equal(lines.filter((l) => l.level === 'error').length, 1, 'one line, not fifty')
})

t.test('close reaches the instance holding the client as a close envelope', async (t) => {
  const { dispatcher, registry, broker, add, sockets } = await setup()
  add('a', 'alice')
  await registry.join('i2')
  await registry.add(entry('far', 'i2', 'alice'))
  t.same(await dispatcher.close({ kind: 'user', userId: 'alice' }, 4000, 'bye'), { recipients: 1, remoteInstances: 1 })
  t.same(broker.published[0], { envelope: { type: 'close', origin: 'i1', target: { kind: 'user', userId: 'alice' }, code: 4000, reason: 'bye' }, options: { instances: ['i2'] } })
  t.same(sockets.get('a')?.closedWith, { code: 4000, reason: 'bye' })
})

t.test('a close envelope from another instance closes the local target', async (t) => {
  const { dispatcher, add, sockets, connections } = await setup()
  add('a')
  dispatcher.receive({ type: 'close', origin: 'i2', target: { kind: 'client', id: 'a' }, code: 4000, reason: 'remote' })
  t.same(sockets.get('a')?.closedWith, { code: 4000, reason: 'remote' })
  t.equal(connections.get('a'), undefined)
})

t.test('a query is answered with the local connections, topics included, addressed to the asker', async (t) => {
  const { dispatcher, add, connections, broker } = await setup()
  const a = add('a', 'alice')
  connections.subscribe(a, 'news')
  dispatcher.receive({ type: 'query', origin: 'i2', requestId: 'r1', clientIds: ['a', 'gone'] })
  await new Promise((resolve) => setImmediate(resolve))
  const reply = broker.published[0]
  t.same(reply?.options, { instances: ['i2'] })
  t.match(reply?.envelope, { type: 'reply', origin: 'i1', requestId: 'r1', connections: [{ id: 'a', userId: 'alice', topics: ['news'], instanceId: 'i1' }] })
  t.equal((reply?.envelope as { connections: unknown[] }).connections.length, 1, 'an unknown id is left out')
})

t.test('describeRemote resolves with the reply, and rejects with a coded timeout when none comes', async (t) => {
  const { dispatcher, broker } = await setup(true, 50)
  const asked = dispatcher.describeRemote('i2', ['far'])
  await new Promise((resolve) => setImmediate(resolve))
  const query = broker.published[0]?.envelope
  if (query?.type !== 'query') throw new Error('no query published')
  const info = { id: 'far', ip: 'x', userId: null, topics: ['t'], connectedAt: '', instanceId: 'i2' }
  dispatcher.receive({ type: 'reply', origin: 'i2', requestId: query.requestId, connections: [info] })
  t.same(await asked, [info])
  await t.rejects(dispatcher.describeRemote('i3', ['x']), QueryTimeoutError)
})

// The same dispatcher paths over real ws sockets on loopback, with each
// socket writer, so nothing above depends on what the fake socket does.
for (const preparedFrames of [false, true]) {
  t.test(`over real sockets (${preparedFrames ? 'prepared-frame' : 'send'} writer): broadcast, topic and remote envelopes arrive intact`, async (t) => {
    const { log } = recordingLogger()
    const directory = new MemoryDirectory()
    await directory.join('i1')
    const connections = new ConnectionManager({ instanceId: 'i1', maxBufferedBytes: 1 << 20, preparedFrames, log })
    const transport = new FakeTransport()
    const dispatcher = new MessageDispatcher({ instanceId: 'i1', connections, directory, transport, log, conflateMs: 100, queryTimeoutMs: 1000 })
    const peers = await Promise.all([realPeer(t), realPeer(t), realPeer(t)])
    const [subscriber, ...others] = peers.map((peer, n) => new Connection(`c${n}`, '127.0.0.1', null, peer.socket))
    if (subscriber === undefined) throw new Error('no connections')
    for (const connection of [subscriber, ...others]) connections.add(connection)
    connections.subscribe(subscriber, 'prices')

    t.same(await dispatcher.broadcast({ text: 'héllo ✓' }), { recipients: 3, remoteInstances: 0 })
    const [first] = await peers[0].messages(1)
    for (const peer of peers.slice(1)) t.same(await peer.messages(1), [first], 'every client got the same bytes')
    t.equal((transport.published[0]?.envelope as DeliverEnvelope).frame, first, 'the transport carries the bytes the clients got')

    t.same(await dispatcher.publish('prices', 42), { recipients: 1, remoteInstances: 0 })
    t.match(JSON.parse((await peers[0].messages(1))[0] ?? ''), { type: 'publish', topic: 'prices', message: 42 })

    const remote = '{"type":"message","from":"far","message":"é","timestamp":"2020-01-01T00:00:00.000Z"}'
    dispatcher.receive({ type: 'deliver', origin: 'i2', target: { kind: 'client', id: 'c2' }, frame: remote })
    t.same(await peers[2].messages(1), [remote], 'a remote frame is written byte for byte')
  })
}
