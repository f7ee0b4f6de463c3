import t from 'tap'
import type { WebSocket } from 'ws'
import { Connection } from '../lib/connections/connection.js'
import { ConnectionManager, type ConnectionObserver } from '../lib/connections/connection-manager.js'
import { FakeSocket, recordingLogger } from './fakes/fake-socket.js'
import type { Tap } from './helpers/raw-client.js'
import { realPeer, type Peer } from './helpers/real-peer.js'

/** An observer that keeps every call, in order, as `event:argument`. */
function recordingObserver (): { observer: ConnectionObserver, calls: string[] } {
  const calls: string[] = []
  const observer: ConnectionObserver = {
    added: (connection) => { calls.push(`added:${connection.id}`) },
    removed: (connection) => { calls.push(`removed:${connection.id}`) },
    topicOpened: (topic) => { calls.push(`topicOpened:${topic}`) },
    topicClosed: (topic) => { calls.push(`topicClosed:${topic}`) }
  }
  return { observer, calls }
}

interface Harness {
  name: string
  preparedFrames: boolean
  open: (t: Tap) => Promise<Peer>
}

function fakePeer (): Peer {
  const fake = new FakeSocket()
  let read = 0
  return {
    socket: fake as unknown as WebSocket,
    messages: async (count) => {
      read += count
      return fake.sent.slice(read - count, read)
    },
    stall: () => {},
    closeCode: async () => fake.closedWith?.code ?? 0,
    kill: async () => { fake.terminate() },
    fakeBacklog: (bytes) => { fake.bufferedAmount = bytes }
  }
}

const harnesses: Harness[] = [
  { name: 'fake socket', preparedFrames: false, open: async () => fakePeer() },
  { name: 'fake socket, prepared frames on', preparedFrames: true, open: async () => fakePeer() },
  { name: 'ws socket, send writer', preparedFrames: false, open: realPeer },
  { name: 'ws socket, prepared-frame writer', preparedFrames: true, open: realPeer }
]

function setup (options: { maxBufferedBytes?: number, preparedFrames?: boolean } = {}) {
  const { observer, calls } = recordingObserver()
  const { log, lines } = recordingLogger()
  const manager = new ConnectionManager({ instanceId: 'i1', maxBufferedBytes: options.maxBufferedBytes ?? 1000, preparedFrames: options.preparedFrames ?? false, observer, log })
  let n = 0
  const add = (socket: WebSocket, ip = '1.1.1.1', userId: string | null = null): Connection => {
    const connection = new Connection(`c${++n}`, ip, userId === null ? null : { userId }, socket, 0)
    manager.add(connection)
    return connection
  }
  const connect = (ip = '1.1.1.1', userId: string | null = null) => {
    const socket = new FakeSocket()
    return { connection: add(socket as unknown as WebSocket, ip, userId), socket }
  }
  return { manager, calls, add, connect, lines }
}

t.test('indexes connections by id, ip, user and topic, and tells the observer', async (t) => {
  const { manager, calls, connect } = setup()
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
  t.same(calls, ['added:c1', 'added:c2', 'added:c3', 'topicOpened:news'], 'a topic opens once, at its first subscriber')
  t.same([...manager.topics()], ['news'])

  calls.length = 0
  t.equal(manager.remove(a.connection), true)
  t.equal(manager.remove(a.connection), false, 'second remove is a no-op')
  t.equal(manager.subscribers('news').size, 1)
  t.equal(manager.byUser('alice').size, 1)
  t.equal(manager.ipCount('1.1.1.1'), 1)
  t.same(calls, ['removed:c1'], 'the topic stays open while c3 is subscribed; removed once')
  manager.remove(b.connection)
  manager.remove(c.connection)
  t.same(calls, ['removed:c1', 'removed:c2', 'topicClosed:news', 'removed:c3'], 'the topic closes when its last subscriber is removed')
  t.same(manager.ipCounts(), {}, 'no empty entries left behind')
  t.equal(manager.subscribers('news').size, 0)
  t.same([...manager.topics()], [])
})

t.test('a topic closes when its last subscriber leaves, and opens again', async (t) => {
  const { manager, calls, connect } = setup()
  const a = connect()
  const b = connect()
  manager.subscribe(a.connection, 'news')
  manager.subscribe(b.connection, 'news')
  t.equal(manager.unsubscribe(a.connection, 'news'), true)
  t.equal(manager.unsubscribe(a.connection, 'news'), false, 'not subscribed any more')
  t.equal(manager.unsubscribe(b.connection, 'news'), true)
  manager.subscribe(a.connection, 'news')
  t.same(calls, ['added:c1', 'added:c2', 'topicOpened:news', 'topicClosed:news', 'topicOpened:news'])
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

// The write path, against the fake socket and against real ws sockets
// through each socket writer.
for (const harness of harnesses) {
  t.test(`${harness.name}: write sends text frames and counts bytes`, async (t) => {
    const { manager, add } = setup({ preparedFrames: harness.preparedFrames })
    const peer = await harness.open(t)
    const connection = add(peer.socket)
    t.equal(manager.write(connection, Buffer.from('{"a":1}')), true)
    t.same(await peer.messages(1), ['{"a":1}'])
    t.equal(manager.counters.messagesOut, 1)
    t.equal(manager.counters.bytesOut, 7)
    t.equal(manager.send('c1', { type: 'x' }), true)
    const [frame] = await peer.messages(1)
    t.match(JSON.parse(frame ?? '{}'), { type: 'x', timestamp: /Z$/ })
    t.equal(manager.send('nope', { type: 'x' }), false)
  })

  t.test(`${harness.name}: a burst written in one tick does not count against a healthy client`, async (t) => {
    const { manager, add } = setup({ preparedFrames: harness.preparedFrames, maxBufferedBytes: 64 * 1024 })
    const peer = await harness.open(t)
    const connection = add(peer.socket)
    const payload = Buffer.from(JSON.stringify({ pad: 'y'.repeat(16 * 1024) }))
    const accepted = Array.from({ length: 20 }, () => manager.write(connection, payload))
    t.same(accepted, Array(20).fill(true), '20 frames of 16 KiB written in one tick, 320 KiB against a 64 KiB limit')
    t.equal((await peer.messages(20)).length, 20)
    t.equal(manager.counters.slowConsumerCloses, 0)
    t.equal(manager.get('c1'), connection)
  })

  t.test(`${harness.name}: write closes a slow consumer with 4008 and logs it`, async (t) => {
    const { manager, add, lines } = setup({ preparedFrames: harness.preparedFrames, maxBufferedBytes: 1000 })
    const peer = await harness.open(t)
    const connection = add(peer.socket)
    peer.stall()
    if (peer.fakeBacklog !== null) {
      peer.fakeBacklog(1001)
    } else {
      // One frame per turn, so nothing is held corked: what stays is what the
      // client did not read. Loopback buffers hold a few MB at most.
      const frame = Buffer.from(JSON.stringify({ pad: 'z'.repeat(64 * 1024) }))
      for (let n = 0; n < 1000 && manager.write(connection, frame); n++) {
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
    t.equal(manager.write(connection, Buffer.from('{}')), false)
    t.equal(manager.get('c1'), undefined)
    t.equal(manager.counters.slowConsumerCloses, 1)
    t.ok(lines.some((l) => l.level === 'warn'))
    t.equal(manager.write(connection, Buffer.from('{}')), false, 'nothing more is written to it')
    t.equal(manager.counters.slowConsumerCloses, 1, 'counted once')
    t.equal(await peer.closeCode(), 4008)
  })

  t.test(`${harness.name}: write removes a dead socket`, async (t) => {
    const { manager, add } = setup({ preparedFrames: harness.preparedFrames })
    const peer = await harness.open(t)
    const connection = add(peer.socket)
    await peer.kill()
    t.equal(manager.write(connection, Buffer.from('{}')), false)
    t.equal(manager.count, 0)
    t.equal(manager.counters.deadSocketsRemoved, 1)
  })

  t.test(`${harness.name}: closeById closes with the given code and unregisters`, async (t) => {
    const { manager, add } = setup({ preparedFrames: harness.preparedFrames })
    const peer = await harness.open(t)
    add(peer.socket)
    t.equal(manager.closeById('c1', 4000, 'closed by server'), true)
    t.equal(manager.closeById('c1', 4000, 'again'), false)
    t.equal(manager.count, 0)
    t.equal(await peer.closeCode(), 4000)
  })
}
