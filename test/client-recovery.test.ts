import t from 'tap'
import { HubClient, type HubClientEvents, type HubClientOptions, type SocketEvent, type WebSocketLike } from '../lib/client/index.js'
import type { Tap } from './helpers.js'

// HubClient's history recovery against a scripted fake server: no hub, no
// network. Each test plays the server's side frame by frame, so the seams
// (a replay overlapping live publications, a reset, a new epoch, another
// instance) happen exactly where the test puts them.

type Frame = Record<string, unknown> & { type: string }
type Handler = (socket: ServerSide, frame: Frame) => void

/** The server's end of one fake connection. */
interface ServerSide {
  send: (frame: Frame) => void
  /** Closes as a crashed instance or a dead network does: no close frame, code 1006. */
  drop: () => void
}

const TIMESTAMP = new Date(0).toISOString()

/** A fake hub at one URL: welcomes each connection and hands every frame it receives to the test's handler. */
class FakeServer {
  readonly received: Frame[] = []
  readonly connections: ServerSide[] = []
  handler: Handler = () => {}

  constructor (readonly name: string) {}

  get last (): ServerSide {
    const last = this.connections.at(-1)
    if (last === undefined) throw new Error(`${this.name} has no connection`)
    return last
  }
}

/** Builds a WebSocket class whose sockets talk to the FakeServer registered for their URL. */
function fakeWebSocket (servers: Map<string, FakeServer>): new (url: string) => WebSocketLike {
  return class FakeSocket implements WebSocketLike {
    readyState = 0
    readonly #listeners = new Map<string, Array<(event: SocketEvent) => void>>()
    readonly #server: FakeServer

    constructor (url: string) {
      const server = servers.get(url)
      if (server === undefined) throw new Error(`no fake server at ${url}`)
      this.#server = server
      const side: ServerSide = {
        // Frames arrive in order, each on its own microtask, as a socket's messages do.
        send: (frame) => queueMicrotask(() => this.#fire('message', { data: JSON.stringify({ timestamp: TIMESTAMP, ...frame }) })),
        drop: () => this.#closed(1006, '')
      }
      server.connections.push(side)
      queueMicrotask(() => {
        this.readyState = 1
        this.#fire('open', {})
        side.send({ type: 'welcome', clientId: `${server.name}-${server.connections.length}` })
      })
    }

    send (data: string): void {
      const frame = JSON.parse(data) as Frame
      this.#server.received.push(frame)
      this.#server.handler(this.#server.last, frame)
    }

    close (code = 1000, reason = ''): void { this.#closed(code, reason) }
    terminate (): void { this.#closed(1006, '') }

    addEventListener (type: string, listener: (event: SocketEvent) => void): void {
      this.#listeners.set(type, [...(this.#listeners.get(type) ?? []), listener])
    }

    #closed (code: number, reason: string): void {
      if (this.readyState === 3) return
      this.readyState = 3
      queueMicrotask(() => this.#fire('close', { code, reason }))
    }

    #fire (type: string, event: SocketEvent): void {
      if (type === 'message' && this.readyState !== 1) return
      for (const listener of this.#listeners.get(type) ?? []) listener(event)
    }
  }
}

interface Setup {
  hub: HubClient
  servers: FakeServer[]
  /** What the app saw, in order: publications by offset, and the recovery events. */
  log: string[]
  /** Resolves once `entry` is in the log (now or later). */
  logged: (entry: string) => Promise<void>
}

function setup (t: Tap, urls: string[], options: HubClientOptions = {}): Setup {
  const servers = urls.map((url) => new FakeServer(new URL(url).host))
  const byUrl = new Map(urls.map((url, i) => [url, servers[i] as FakeServer]))
  const hub = new HubClient(urls, {
    pingIntervalMs: 0,
    reconnect: { initialDelayMs: 1, maxDelayMs: 5, factor: 1, jitter: 0 },
    WebSocket: fakeWebSocket(byUrl),
    ...options
  })
  t.teardown(() => hub.close())
  const log: string[] = []
  const waiting = new Map<string, () => void>()
  const append = (entry: string): void => {
    log.push(entry)
    waiting.get(entry)?.()
  }
  hub.on('publish', (frame) => append(`publish ${String(frame.offset)}@${String(frame.epoch)}`))
  hub.on('recovered', ({ topic, count }) => append(`recovered ${topic} ${count}`))
  hub.on('reset', ({ topic, offset, epoch }) => append(`reset ${topic} ${offset}@${epoch}`))
  const logged = (entry: string): Promise<void> => log.includes(entry)
    ? Promise.resolve()
    : new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`"${entry}" not seen within 2000 ms; saw ${JSON.stringify(log)}`)), 2000)
      waiting.set(entry, () => { clearTimeout(timer); resolve() })
    })
  return { hub, servers, log, logged }
}

function next<K extends keyof HubClientEvents> (hub: HubClient, type: K, timeoutMs = 2000): Promise<HubClientEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no ${type} event within ${timeoutMs} ms`)) }, timeoutMs)
    const off = hub.on(type, (event) => {
      clearTimeout(timer)
      off()
      resolve(event)
    })
  })
}

const pub = (offset: number, epoch = 'e1', topic = 'user:42'): Frame => ({ type: 'publish', topic, from: 'server', message: { n: offset }, offset, epoch })

/** Answers a subscribe as the hub does: `subscribed` (with `extra`), then the ack. */
function answerSubscribe (socket: ServerSide, frame: Frame, extra: Record<string, unknown>, before: Frame[] = []): void {
  for (const replayed of before) socket.send(replayed)
  socket.send({ type: 'subscribed', topic: frame.topic, ...extra })
  socket.send({ type: 'ack', id: frame.id })
}

/** Connects, subscribes to user:42 at offset 0 of `epoch`, and receives 1..n (none for 0). */
async function seen (s: Setup, n: number, epoch = 'e1'): Promise<void> {
  const server = s.servers[0] as FakeServer
  server.handler = (socket, frame) => {
    if (frame.type === 'subscribe') answerSubscribe(socket, frame, { offset: 0, epoch })
  }
  await s.hub.connect()
  await s.hub.subscribe('user:42')
  if (n === 0) return
  const arrived = new Promise<void>((resolve) => {
    const off = s.hub.on('publish', (frame) => { if (frame.offset === n) { off(); resolve() } })
  })
  for (let offset = 1; offset <= n; offset++) server.last.send(pub(offset, epoch))
  await arrived
}

t.test('a reconnect replays what was missed; a duplicate at the seam is dropped', async (t) => {
  const s = setup(t, ['ws://a.test/ws'])
  await seen(s, 2)
  const [server] = s.servers as [FakeServer]
  t.same(s.hub.position('user:42'), { offset: 2, epoch: 'e1' })
  server.handler = (socket, frame) => {
    if (frame.type !== 'subscribe') return
    // Replayed 3 and 4, then live: 4 again (read from history and also
    // caught live), then 5.
    answerSubscribe(socket, frame, { offset: 4, epoch: 'e1', recovered: true }, [pub(3), pub(4)])
    socket.send(pub(4))
    socket.send(pub(5))
  }
  server.last.drop()
  await s.logged('publish 5@e1')
  t.match(server.received.at(-1), { type: 'subscribe', topic: 'user:42', since: { offset: 2, epoch: 'e1' } }, 'resubscribed with since')
  t.same(s.log, ['publish 1@e1', 'publish 2@e1', 'publish 3@e1', 'publish 4@e1', 'recovered user:42 2', 'publish 5@e1'])
  t.same(s.hub.position('user:42'), { offset: 5, epoch: 'e1' })
})

t.test('recovered: false is a reset: nothing replayed, the app reloads, live publications follow', async (t) => {
  const s = setup(t, ['ws://a.test/ws'])
  await seen(s, 2)
  const [server] = s.servers as [FakeServer]
  server.handler = (socket, frame) => {
    if (frame.type !== 'subscribe') return
    answerSubscribe(socket, frame, { offset: 900, epoch: 'e1', recovered: false })
    socket.send(pub(900))
    socket.send(pub(901))
  }
  server.last.drop()
  await s.logged('publish 901@e1')
  t.same(s.log.slice(2), ['reset user:42 900@e1', 'publish 901@e1'], 'the reset offset itself is not delivered again')
})

t.test('a new epoch: reset with it, and its low offsets are new, not duplicates', async (t) => {
  const s = setup(t, ['ws://a.test/ws'])
  await seen(s, 5)
  const [server] = s.servers as [FakeServer]
  server.handler = (socket, frame) => {
    if (frame.type !== 'subscribe') return
    answerSubscribe(socket, frame, { offset: 0, epoch: 'e2', recovered: false })
    socket.send(pub(1, 'e2'))
  }
  server.last.drop()
  await s.logged('publish 1@e2')
  t.same(s.log.slice(5), ['reset user:42 0@e2', 'publish 1@e2'])

  // A live publication of yet another epoch, with no notice first: the
  // client says reset itself, just before it.
  const reset = next(s.hub, 'reset')
  server.last.send(pub(1, 'e3'))
  t.same(await reset, { topic: 'user:42', offset: 0, epoch: 'e3' })
  // A `reset` frame from the server is the reset event, once.
  const frameReset = next(s.hub, 'reset')
  server.last.send({ type: 'reset', topic: 'user:42', offset: 7, epoch: 'e3' })
  t.same(await frameReset, { topic: 'user:42', offset: 7, epoch: 'e3' })
  server.last.send(pub(7, 'e3'))
  server.last.send(pub(8, 'e3'))
  await s.logged('publish 8@e3')
  t.same(s.log.slice(7), ['reset user:42 0@e3', 'publish 1@e3', 'reset user:42 7@e3', 'publish 8@e3'])
})

t.test('the first publication into an idle topic (offset 1 of a new epoch after offset 0) continues, no reset', async (t) => {
  const s = setup(t, ['ws://a.test/ws'])
  await seen(s, 0, 'empty-at-t0')
  const [server] = s.servers as [FakeServer]
  server.last.send(pub(1, 'head-t1'))
  server.last.send(pub(2, 'head-t1'))
  await s.logged('publish 2@head-t1')
  t.same(s.log, ['publish 1@head-t1', 'publish 2@head-t1'])
})

t.test('positions survive a reconnect to another instance (another URL)', async (t) => {
  const s = setup(t, ['ws://a.test/ws', 'ws://b.test/ws'])
  await seen(s, 3)
  const [a, b] = s.servers as [FakeServer, FakeServer]
  b.handler = (socket, frame) => {
    if (frame.type === 'subscribe') answerSubscribe(socket, frame, { offset: 4, epoch: 'e1', recovered: true }, [pub(3), pub(4)])
  }
  a.last.drop()
  await s.logged('recovered user:42 1')
  t.equal(s.hub.url, 'ws://b.test/ws')
  t.equal(s.hub.clientId, 'b.test-1')
  t.match(b.received, [{ type: 'subscribe', topic: 'user:42', since: { offset: 3, epoch: 'e1' } }])
  t.same(s.log, ['publish 1@e1', 'publish 2@e1', 'publish 3@e1', 'publish 4@e1', 'recovered user:42 1'], 'offset 3 was a duplicate')
})

t.test('a subscription the server made again, with a gap, is a reset; unsubscribe forgets the position', async (t) => {
  const s = setup(t, ['ws://a.test/ws'])
  await seen(s, 2)
  const [server] = s.servers as [FakeServer]
  const reset = next(s.hub, 'reset')
  // The server subscribes the connection itself (it cannot know `since`).
  server.last.send({ type: 'subscribed', topic: 'user:42', offset: 6, epoch: 'e1' })
  t.same(await reset, { topic: 'user:42', offset: 6, epoch: 'e1' })
  server.handler = (socket, frame) => { socket.send({ type: 'ack', id: frame.id }) }
  await s.hub.unsubscribe('user:42')
  t.equal(s.hub.position('user:42'), undefined)
  server.handler = (socket, frame) => answerSubscribe(socket, frame, { offset: 6, epoch: 'e1' })
  await s.hub.subscribe('user:42')
  t.notOk('since' in (server.received.at(-1) ?? {}), 'a fresh subscribe has no since')
})

t.test('history() and publish with an idempotency key', async (t) => {
  const s = setup(t, ['ws://a.test/ws'])
  const [server] = s.servers as [FakeServer]
  server.handler = (socket, frame) => {
    if (frame.type === 'history') socket.send({ type: 'history', id: frame.id, topic: frame.topic, publications: [pub(4), pub(5)], offset: 5, epoch: 'e1' })
    if (frame.type === 'publish') socket.send({ type: 'ack', id: frame.id, offset: 5, epoch: 'e1' })
  }
  await s.hub.connect()
  const reply = await s.hub.history('user:42', { since: { offset: 3, epoch: 'e1' }, limit: 10 })
  t.match(server.received.at(-1), { type: 'history', topic: 'user:42', since: { offset: 3, epoch: 'e1' }, limit: 10 })
  t.same(reply.publications.map((p) => (p as { offset?: number }).offset), [4, 5])
  t.equal(s.hub.position('user:42'), undefined, 'history() does not move the position')
  const ack = await s.hub.publish('user:42', 'hi', { idempotencyKey: 'k-1' })
  t.match(server.received.at(-1), { type: 'publish', topic: 'user:42', message: 'hi', idempotencyKey: 'k-1' })
  t.match(ack, { offset: 5, epoch: 'e1' })
  t.same(s.log, [], 'nothing from history() was emitted')
})
