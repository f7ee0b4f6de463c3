import t from 'tap'
import type { WebSocket } from 'ws'
import { Connection } from '../lib/connections/connection.js'
import { ConnectionManager } from '../lib/connections/connection-manager.js'
import { MemoryRegistry } from '../lib/cluster/memory/memory-registry.js'
import { FakeSocket, recordingLogger } from './fakes/fake-socket.js'

function setup (maxBufferedBytes = 1000) {
  const registry = new MemoryRegistry()
  const { log, lines } = recordingLogger()
  const manager = new ConnectionManager({ instanceId: 'i1', maxBufferedBytes, registry, log })
  let n = 0
  const connect = (ip = '1.1.1.1', userId: string | null = null) => {
    const socket = new FakeSocket()
    const connection = new Connection(`c${++n}`, ip, userId === null ? null : { userId }, socket as unknown as WebSocket, 0)
    manager.add(connection)
    return { connection, socket }
  }
  return { manager, registry, connect, lines }
}

t.test('indexes connections by id, ip, user and topic', async (t) => {
  const { manager, registry, connect } = setup()
  const a = connect('1.1.1.1', 'alice')
  const b = connect('1.1.1.1', 'alice')
  const c = connect('2.2.2.2', null)
  t.equal(manager.count, 3)
  t.same(manager.ipCounts(), { '1.1.1.1': 2, '2.2.2.2': 1 })
  t.equal(manager.byUser('alice').size, 2)
  t.equal(manager.byUser('bob').size, 0)
  manager.subscribe(a.connection, 'news')
  manager.subscribe(a.connection, 'news')
  manager.subscribe(c.connection, 'news')
  t.equal(manager.subscribers('news').size, 2)
  t.same(manager.info('c1'), { id: 'c1', ip: '1.1.1.1', userId: 'alice', topics: ['news'], connectedAt: new Date(0).toISOString(), instanceId: 'i1' })
  t.same((await registry.list({ limit: 10, offset: 0 })).connections.find((i) => i.id === 'c1')?.topics, ['news'], 'registry sees topic changes')
  t.equal(await registry.locate('c2'), 'i1')

  t.equal(manager.remove(a.connection), true)
  t.equal(manager.remove(a.connection), false, 'second remove is a no-op')
  t.equal(manager.subscribers('news').size, 1)
  t.equal(manager.byUser('alice').size, 1)
  t.equal(manager.ipCount('1.1.1.1'), 1)
  manager.remove(b.connection)
  manager.remove(c.connection)
  t.same(manager.ipCounts(), {}, 'no empty entries left behind')
  t.equal(manager.subscribers('news').size, 0)
  t.same(await registry.locateUser('alice'), [])
})

t.test('list pages in connection order', async (t) => {
  const { manager, connect } = setup()
  for (let n = 0; n < 7; n++) connect()
  const page = manager.list({ limit: 3, offset: 2 })
  t.equal(page.count, 7)
  t.same(page.connections.map((c) => c.id), ['c3', 'c4', 'c5'])
  t.same(manager.list({ offset: 6 }).connections.map((c) => c.id), ['c7'])
  t.equal(manager.list({ offset: 10 }).connections.length, 0)
})

t.test('write sends text frames and counts bytes', async (t) => {
  const { manager, connect } = setup()
  const { connection, socket } = connect()
  t.equal(manager.write(connection, Buffer.from('{"a":1}')), true)
  t.same(socket.sent, ['{"a":1}'])
  t.equal(manager.counters.messagesOut, 1)
  t.equal(manager.counters.bytesOut, 7)
  t.equal(manager.send('c1', { type: 'x' }), true)
  t.match(socket.frames()[1], { type: 'x', timestamp: /Z$/ })
  t.equal(manager.send('nope', { type: 'x' }), false)
})

t.test('write closes a slow consumer with 4008 and logs it', async (t) => {
  const { manager, connect, lines } = setup(1000)
  const { connection, socket } = connect()
  socket.bufferedAmount = 1001
  t.equal(manager.write(connection, Buffer.from('x')), false)
  t.same(socket.closedWith, { code: 4008, reason: 'slow consumer' })
  t.equal(manager.get('c1'), undefined)
  t.equal(manager.counters.slowConsumerCloses, 1)
  t.ok(lines.some((l) => l.level === 'warn'))
  t.equal(manager.write(connection, Buffer.from('x')), false, 'nothing more is written to it')
  t.equal(manager.counters.slowConsumerCloses, 1, 'counted once')
})

t.test('write removes a dead socket', async (t) => {
  const { manager, connect } = setup()
  const { connection, socket } = connect()
  socket.readyState = 3
  t.equal(manager.write(connection, Buffer.from('x')), false)
  t.equal(manager.count, 0)
  t.equal(manager.counters.deadSocketsRemoved, 1)
})

t.test('closeById closes with the given code and unregisters', async (t) => {
  const { manager, connect } = setup()
  const { socket } = connect()
  t.equal(manager.closeById('c1', 4000, 'closed by server'), true)
  t.same(socket.closedWith, { code: 4000, reason: 'closed by server' })
  t.equal(manager.closeById('c1', 4000, 'again'), false)
})
