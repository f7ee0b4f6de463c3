import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import ts from 'typescript'
import { WebSocket, WebSocketServer } from 'ws'
import {
  HubClient,
  HubClientError,
  backoffDelay,
  normalizeBackoff,
  DEFAULT_BACKOFF,
  type HubClientEvents,
  type HubClientOptions,
  type InboundFrame,
  type WebSocketConstructor
} from '../lib/client/index.js'
import { routeMessage, type FrameSink } from '../lib/client/frame-router.js'
import { HubProtocolError } from '../lib/index.js'
import { build, type Tap } from './helpers.js'
import { internalsOf } from '../lib/internals.js'

const FAST_RECONNECT = { initialDelayMs: 10, maxDelayMs: 50, factor: 2, jitter: 0 }

/** A client closed when the test ends; pings off unless a test wants them. */
function client (t: Tap, url: string, options: HubClientOptions = {}): HubClient {
  const hub = new HubClient(url, { pingIntervalMs: 0, reconnect: FAST_RECONNECT, ...options })
  t.teardown(() => hub.close())
  return hub
}

/** The next event of a type, or a rejection after `timeoutMs`. */
function next<K extends keyof HubClientEvents> (hub: HubClient, type: K, timeoutMs?: number): Promise<HubClientEvents[K]>
function next (hub: HubClient, type: string, timeoutMs?: number): Promise<InboundFrame>
function next (hub: HubClient, type: string, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no ${type} event within ${timeoutMs} ms`)) }, timeoutMs)
    const off = hub.on(type, (event) => {
      clearTimeout(timer)
      off()
      resolve(event)
    })
  })
}

async function rejection (promise: Promise<unknown>): Promise<HubClientError> {
  try {
    await promise
  } catch (err) {
    if (err instanceof HubClientError) return err
    throw err
  }
  throw new Error('expected a rejection')
}

t.test('connect resolves with the client id of the welcome', async (t) => {
  const { app, wsUrl } = await build(t)
  const hub = client(t, wsUrl)
  const states: string[] = []
  hub.on('state', ({ state }) => states.push(state))
  t.equal(hub.state, 'closed', 'closed until connect()')
  const welcomed = next(hub, 'welcome')
  const clientId = await hub.connect()
  t.match(clientId, /^[0-9a-f-]{36}$/)
  t.equal(hub.clientId, clientId)
  t.equal(hub.state, 'open')
  t.equal((await welcomed).clientId, clientId, 'the welcome frame is an event too')
  t.same(states, ['connecting', 'open'])
  t.ok(internalsOf(app.wsHub).connections.get(clientId), 'the hub holds that id')
  t.equal(await hub.connect(), clientId, 'connect() on an open client resolves at once')

  await hub.close()
  t.equal(hub.state, 'closed')
  t.equal(hub.clientId, undefined)
  t.same(states, ['connecting', 'open', 'closed'])
})

t.test('broadcast, direct, subscribe and publish resolve on their acks', async (t) => {
  const { wsUrl } = await build(t)
  const a = client(t, wsUrl)
  const b = client(t, wsUrl)
  const [aId, bId] = await Promise.all([a.connect(), b.connect()])

  const atB = next(b, 'message')
  const atA = next(a, 'message')
  const ack = await a.broadcast({ text: 'hello' })
  t.equal(ack.type, 'ack')
  t.type(ack.id, 'number')
  t.match(await atB, { type: 'message', from: aId, message: { text: 'hello' } })
  t.match(await atA, { from: aId }, 'the sender receives its broadcast too')

  const direct = next(b, 'direct')
  await a.direct(bId, 'psst')
  t.match(await direct, { from: aId, message: 'psst' })

  await b.subscribe('news')
  t.same(b.topics, ['news'])
  const published = next(b, 'publish')
  await a.publish('news', { headline: 'up' })
  t.match(await published, { topic: 'news', from: aId, message: { headline: 'up' } })

  await b.unsubscribe('news')
  t.same(b.topics, [])

  const pong = await a.ping()
  t.equal(pong.type, 'pong')
  const ids = new Set<unknown>()
  for (let i = 0; i < 3; i++) ids.add((await a.broadcast(i)).id)
  t.equal(ids.size, 3, 'every request has its own id')
})

t.test('sendToUser and the token subprotocol', async (t) => {
  const tokens: string[] = []
  const { wsUrl } = await build(t, {
    authenticate: (request) => {
      const offered = String(request.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim())
      const token = offered.find((p) => p.startsWith('bearer.'))
      if (token === undefined) return null
      tokens.push(token)
      return { userId: token.slice('bearer.'.length) }
    }
  })
  const alice = client(t, wsUrl, { token: 'alice' })
  const bob = client(t, wsUrl, { token: async () => 'bob' })
  await Promise.all([alice.connect(), bob.connect()])
  t.equal(alice.userId, 'alice')
  t.equal(bob.userId, 'bob', 'a token function is awaited')
  t.same(tokens.sort(), ['bearer.alice', 'bearer.bob'])

  const received = next(bob, 'direct')
  await alice.sendToUser('bob', 'hi bob')
  t.match(await received, { fromUser: 'alice', user: 'bob', message: 'hi bob' })

  const anonymous = client(t, wsUrl, { reconnect: false })
  const refused = await rejection(anonymous.connect())
  t.equal(refused.code, 'connect_failed', 'a refused handshake with reconnect off rejects connect()')
  t.equal(anonymous.state, 'closed')
})

t.test('an error frame rejects the request with its code', async (t) => {
  const { wsUrl } = await build(t)
  const hub = client(t, wsUrl)
  await hub.connect()
  const errorEvent = next(hub, 'error')
  const err = await rejection(hub.direct('no-such-client', 'hello?'))
  t.equal(err.code, 'unknown_target')
  t.match(err.message, /no-such-client/)
  t.match(err.frame, { type: 'error', code: 'unknown_target' })
  t.equal((await errorEvent).code, 'unknown_target', 'and is an error event')

  t.equal((await rejection(hub.subscribe('has space'))).code, 'invalid_message')
  t.same(hub.topics, [], 'a refused subscribe is not remembered')
  t.equal((await rejection(hub.request({ type: 'dance' }))).code, 'unknown_type')
})

// Regression: the client had no `batch` case, so a client that opted in to
// batching never saw its acks (they came wrapped) and every request timed out.
t.test('regression: acks inside a batch frame resolve requests (client had no batch case)', async (t) => {
  const { wsUrl } = await build(t, { batch: { maxDelayMs: 20, maxMessages: 100 } })
  const raw: string[] = []
  class Recording extends WebSocket {
    constructor (url: string, protocols?: string | string[]) {
      super(url, protocols)
      this.on('message', (data) => raw.push(data.toString()))
    }
  }
  const WebSocketClass = Recording as unknown as WebSocketConstructor
  // A short ack timeout, so the bug fails fast instead of hanging.
  const byProtocol = client(t, wsUrl, { protocols: ['ws-hub.v1.batch'], ackTimeoutMs: 2000, WebSocket: WebSocketClass })
  const byQuery = client(t, `${wsUrl}?batch=1`, { ackTimeoutMs: 2000 })
  await Promise.all([byProtocol.connect(), byQuery.connect()])

  const seen: InboundFrame[] = []
  byProtocol.on('*', (frame) => { seen.push(frame) })
  const acks = await Promise.all([0, 1, 2].map(async (n) => byProtocol.broadcast(n)))
  t.same(acks.map((ack) => ack.type), ['ack', 'ack', 'ack'], 'every request resolved on its ack')
  t.ok(raw.some((data) => data.startsWith('{"type":"batch"')), 'the acks did come in batch frames')
  t.notOk(seen.some((frame) => frame.type === 'batch'), 'the wrapper is not an event')
  const order = seen.map((frame) => frame.type === 'message' ? `message ${String(frame.message)}` : frame.type)
  t.same(order.filter((entry) => entry.startsWith('message')), ['message 0', 'message 1', 'message 2'], 'inner frames in order')
  t.equal(order.filter((entry) => entry === 'ack').length, 3)

  t.equal((await rejection(byProtocol.direct('nobody', 'x'))).code, 'unknown_target', 'an error frame inside a batch rejects its request')
  t.equal((await byQuery.subscribe('news')).type, 'ack', 'opting in by ?batch=1 works the same')
  const published = next(byQuery, 'publish')
  await byProtocol.publish('news', 'up')
  t.match(await published, { topic: 'news', message: 'up' })
  t.equal((await byQuery.ping()).type, 'pong', 'a pong inside a batch resolves ping()')
})

t.test('a batch is unwrapped one level; bad entries are invalid frames; a handler closing mid-batch stops the rest', async (t) => {
  const events: Array<[string, unknown]> = []
  let live = true
  const sink: FrameSink = {
    welcome: () => { events.push(['welcome()', null]) },
    settle: (frame) => { events.push(['settle()', frame.id]) },
    refuse: (frame) => { events.push(['refuse()', frame.id]) },
    subscription: (frame) => { events.push(['subscription()', frame.topic]) },
    publication: () => true,
    reset: (frame) => { events.push(['reset()', frame.topic]) },
    emit: (type, payload) => {
      if (type !== '*') events.push([type, type === 'invalid-frame' ? (payload as { error: string }).error : null])
      if (type === 'stop') live = false
    }
  }
  const batch = (messages: unknown): string => JSON.stringify({ type: 'batch', messages, timestamp: 'now' })
  routeMessage(batch([{ type: 'ack', id: 1 }, 5, { type: 'batch', messages: [] }, { type: 'error', id: 2 }, { type: 'stop' }, { type: 'ack', id: 3 }]), sink, () => live)
  t.same(events, [
    ['settle()', 1], ['ack', null],
    ['invalid-frame', 'a batch entry that is not a frame'],
    ['invalid-frame', 'a batch entry that is not a frame'],
    ['refuse()', 2], ['error', null],
    ['stop', null]
  ])
  events.length = 0
  routeMessage(batch('nope'), sink, () => true)
  t.same(events, [['invalid-frame', 'a batch without a messages array']])
})

t.test('custom types: request resolves after the service, whose frames are events', async (t) => {
  const { wsUrl } = await build(t, {
    service: {
      onMessage: async (message, { reply }) => {
        if (message.type !== 'roll') throw new HubProtocolError('unknown_type', 'no')
        reply({ type: 'rolled', value: 4 })
      }
    }
  })
  const hub = client(t, wsUrl)
  await hub.connect()
  const seen: string[] = []
  hub.on('*', (frame) => { seen.push(frame.type) })
  const rolled = next(hub, 'rolled')
  await hub.request({ type: 'roll', sides: 6, id: 'ignored' })
  t.match(await rolled, { type: 'rolled', value: 4 })
  t.same(seen, ['rolled', 'ack'], 'the service reply comes before the ack')
})

t.test('a request with no answer rejects after ackTimeoutMs', async (t) => {
  const { wsUrl } = await build(t, { service: { onMessage: () => new Promise<void>(() => {}) } })
  const hub = client(t, wsUrl, { ackTimeoutMs: 100 })
  await hub.connect()
  const started = Date.now()
  const err = await rejection(hub.request({ type: 'stall' }))
  t.equal(err.code, 'ack_timeout')
  t.ok(Date.now() - started >= 90, 'not before the timeout')
  t.equal(hub.state, 'open', 'a late ack does not close the connection')
})

t.test('requests pending when the socket closes are rejected, not left hanging', async (t) => {
  const { app, wsUrl } = await build(t, { service: { onMessage: () => new Promise<void>(() => {}) } })
  const hub = client(t, wsUrl, { reconnect: false })
  const id = await hub.connect()
  const pending = [hub.request({ type: 'stall' }), hub.request({ type: 'stall' })]
  const closed = next(hub, 'close')
  internalsOf(app.wsHub).connections.closeById(id, 1011, 'server bug')
  for (const promise of pending) {
    const err = await rejection(promise)
    t.equal(err.code, 'disconnected')
    t.equal(err.closeCode, 1011)
  }
  t.match(await closed, { code: 1011, reason: 'server bug', willReconnect: false })
  t.equal(hub.state, 'closed', 'reconnect: false gives up')
  t.equal((await rejection(hub.broadcast('late'))).code, 'not_connected')
})

t.test('reconnects after the server drops the socket and subscribes again', async (t) => {
  const { app, wsUrl } = await build(t)
  const hub = client(t, wsUrl)
  const publisher = client(t, wsUrl)
  const [firstId] = await Promise.all([hub.connect(), publisher.connect()])
  await hub.subscribe('news')

  const states: string[] = []
  hub.on('state', ({ state }) => states.push(state))
  const reopened = next(hub, 'open')
  const closed = next(hub, 'close')
  internalsOf(app.wsHub).connections.closeById(firstId, 1011, 'x')
  t.match(await closed, { code: 1011, willReconnect: true })
  const open = await reopened
  t.equal(open.reconnected, true)
  t.same(open.resubscribeFailures, [])
  t.not(open.clientId, firstId, 'a new connection, a new id')
  t.equal(hub.clientId, open.clientId)
  t.same(states, ['reconnecting', 'open'])

  const published = next(hub, 'publish')
  await publisher.publish('news', 'after the reconnect')
  t.match(await published, { topic: 'news', message: 'after the reconnect' }, 'the topic was subscribed again')

  // A server killed without a close frame: 1006, reconnected too.
  const again = next(hub, 'open')
  for (const socket of app.websocketServer.clients) {
    if (internalsOf(app.wsHub).connections.get(open.clientId)?.socket === socket) socket.terminate()
  }
  t.not((await again).clientId, open.clientId)
})

t.test('close codes 4000 and 1008 are not retried by default; noReconnectCodes changes that', async (t) => {
  const { app, url, wsUrl } = await build(t)
  const hub = client(t, wsUrl)
  const id = await hub.connect()
  const closed = next(hub, 'close')
  const response = await fetch(`${url}/api/connections/${id}`, { method: 'DELETE' })
  t.equal(response.status, 204)
  t.match(await closed, { code: 4000, willReconnect: false })
  t.equal(hub.state, 'closed')

  const policy = client(t, wsUrl)
  const policyId = await policy.connect()
  const policyClosed = next(policy, 'close')
  internalsOf(app.wsHub).connections.closeById(policyId, 1008, 'session expired')
  t.match(await policyClosed, { code: 1008, willReconnect: false })

  const stubborn = client(t, wsUrl, { noReconnectCodes: [] })
  const stubbornId = await stubborn.connect()
  const reopened = next(stubborn, 'open')
  internalsOf(app.wsHub).connections.closeById(stubbornId, 4000, 'closed by server')
  t.equal((await reopened).reconnected, true, 'with noReconnectCodes: [] even 4000 is retried')
})

t.test('reconnect delays grow with backoff; close() stops the retries', async (t) => {
  // A port with nothing listening: every attempt fails at once.
  const probe = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await once(probe, 'listening')
  const { port } = probe.address() as AddressInfo
  await new Promise<void>((resolve) => probe.close(() => resolve()))

  const hub = client(t, `ws://127.0.0.1:${port}/ws`, { reconnect: { initialDelayMs: 5, factor: 2, maxDelayMs: 40, jitter: 0 } })
  const delays: number[] = []
  const five = new Promise<void>((resolve) => {
    hub.on('reconnecting', ({ attempt, delayMs }) => {
      delays.push(delayMs)
      if (attempt === 5) resolve()
    })
  })
  const connecting = hub.connect()
  await five
  t.same(delays, [5, 10, 20, 40, 40], 'doubling, capped at maxDelayMs')
  t.equal(hub.state, 'reconnecting')

  await hub.close()
  const err = await rejection(connecting)
  t.equal(err.code, 'closed', 'connect() rejects when close() comes first')
  const count = delays.length
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(delays.length, count, 'no attempt after close()')
  t.equal(hub.state, 'closed')
})

t.test('backoffDelay grows exponentially, caps and jitters', async (t) => {
  const options = { initialDelayMs: 100, maxDelayMs: 1000, factor: 2, jitter: 0.5 }
  const top = (attempt: number): number => backoffDelay(attempt, options, () => 0)
  t.same([1, 2, 3, 4, 5, 6].map(top), [100, 200, 400, 800, 1000, 1000], 'random 0: the ceiling')
  t.equal(backoffDelay(3, options, () => 0.999999), 200, 'random near 1: half the ceiling with jitter 0.5')
  t.equal(backoffDelay(3, options, () => 0.5), 300)
  t.equal(backoffDelay(3, { ...options, jitter: 0 }, () => 0.9), 400, 'no jitter, no randomness')
  t.equal(backoffDelay(3, { ...options, jitter: 1 }, () => 0.75), 100, 'full jitter spans down to 0')

  let seed = 1
  const random = (): number => { seed = (seed * 16807) % 2147483647; return (seed - 1) / 2147483646 }
  const samples = Array.from({ length: 200 }, () => backoffDelay(4, options, random))
  t.ok(samples.every((d) => d >= 400 && d <= 800), 'within [ceiling/2, ceiling]')
  t.ok(new Set(samples).size > 50, 'spread, not one value')

  t.equal(backoffDelay(1, DEFAULT_BACKOFF, () => 0), 500, 'defaults: 500 ms first')
  t.equal(backoffDelay(50, DEFAULT_BACKOFF, () => 0), 30_000, 'defaults: capped at 30 s')
  t.same(normalizeBackoff({}), { initialDelayMs: 500, maxDelayMs: 30000, factor: 2, jitter: 0.5 })
  t.throws(() => normalizeBackoff({ jitter: 2 }), /reconnect\.jitter must be from 0 to 1 \(got 2\)/)
  t.throws(() => normalizeBackoff({ factor: 0.5 }), /factor/)
  t.throws(() => new HubClient('ws://127.0.0.1/ws', { reconnect: { maxDelayMs: 1, initialDelayMs: 10 } }), RangeError)
  t.throws(() => new HubClient('not a url'), TypeError)
  t.throws(() => new HubClient('ftp://example.com/ws'), /ws:, wss:, http: or https:/)
  t.throws(() => new HubClient('ws://127.0.0.1/ws', { ackTimeoutMs: 0 }), /ackTimeoutMs/)
})

/** A bare WebSocket server that welcomes and then never answers: a hung server. */
async function silentServer (t: Tap, welcome: boolean): Promise<{ url: string, connections: () => number }> {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'ws-hub.v1' })
  await once(server, 'listening')
  let count = 0
  server.on('connection', (socket) => {
    count++
    if (welcome) socket.send(JSON.stringify({ type: 'welcome', clientId: `silent-${count}`, timestamp: new Date().toISOString() }))
  })
  t.teardown(() => new Promise<void>((resolve) => {
    for (const socket of server.clients) socket.terminate()
    server.close(() => resolve())
  }))
  const { port } = server.address() as AddressInfo
  return { url: `ws://127.0.0.1:${port}/ws`, connections: () => count }
}

t.test('a server that stops answering pings is given up and reconnected', async (t) => {
  const silent = await silentServer(t, true)
  const hub = client(t, silent.url, { pingIntervalMs: 30, pongTimeoutMs: 80 })
  t.equal(await hub.connect(), 'silent-1')
  const pending = hub.broadcast('into the void')
  const closed = await next(hub, 'close')
  t.equal(closed.code, 1006)
  t.match(closed.reason, /no pong .* within 80 ms/)
  t.equal(closed.willReconnect, true)
  t.equal((await rejection(pending)).code, 'disconnected', 'what was pending is rejected')
  const reopened = await next(hub, 'open')
  t.equal(reopened.clientId, 'silent-2', 'a new connection')
  t.equal(silent.connections(), 2)
})

t.test('an attempt with no welcome within openTimeoutMs is retried', async (t) => {
  const silent = await silentServer(t, false)
  const hub = client(t, silent.url, { openTimeoutMs: 60 })
  const connecting = hub.connect()
  const closed = await next(hub, 'close')
  t.match(closed, { code: 1006, reason: 'no welcome within 60 ms', willReconnect: true })
  await next(hub, 'reconnecting')
  await hub.close()
  t.equal((await rejection(connecting)).code, 'closed')
  t.ok(silent.connections() >= 1)
})

t.test('the WebSocket option replaces the platform class', async (t) => {
  const { wsUrl } = await build(t)
  const made: string[][] = []
  class Recording extends WebSocket {
    constructor (url: string, protocols?: string | string[]) {
      super(url, protocols)
      made.push(Array.isArray(protocols) ? protocols : [String(protocols)])
    }
  }
  const hub = client(t, wsUrl, { WebSocket: Recording as unknown as WebSocketConstructor, token: 'tkn', protocols: ['ws-hub.v1'] })
  await hub.connect()
  t.same(made, [['ws-hub.v1', 'bearer.tkn']], 'the application protocol first, then the token')
})

t.test('a throwing handler does not stop the other handlers', async (t) => {
  const { wsUrl } = await build(t)
  const hub = client(t, wsUrl)
  // tap fails the test on an uncaught exception: stand in for its listeners
  // while the handler's error is expected.
  const tapListeners = process.listeners('uncaughtException')
  process.removeAllListeners('uncaughtException')
  const thrown: unknown[] = []
  const surfaced = new Promise<void>((resolve) => {
    process.on('uncaughtException', (err) => { thrown.push(err); resolve() })
  })
  t.teardown(() => {
    process.removeAllListeners('uncaughtException')
    for (const listener of tapListeners) process.on('uncaughtException', listener)
  })
  const boom = new Error('handler bug')
  const off = hub.on('welcome', () => { throw boom })
  const after = next(hub, 'welcome')
  const opened = next(hub, 'open')
  await hub.connect()
  await after
  await opened
  off()
  await surfaced
  t.same(thrown, [boom], 'the next handler and the client went on; the error surfaces as uncaught, on its own task')
})

t.test('the client has no runtime import a browser could not load', async (t) => {
  const dir = fileURLToPath(new URL('../lib/client/', import.meta.url))
  const files = (await readdir(dir)).filter((file) => file.endsWith('.ts'))
  t.ok(files.includes('hub-client.ts'))
  for (const file of files) {
    const source = await readFile(join(dir, file), 'utf8')
    const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } })
    const staticImports = [...outputText.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gm)].map((m) => m[1])
    for (const specifier of staticImports) t.match(specifier, /^\.\/[a-z-]+\.js$/, `${file}: static import ${specifier ?? ''} is a sibling file`)
    const dynamicImports = [...outputText.matchAll(/import\(([^)]*)\)/g)].map((m) => m[1]?.replace(/\/\*.*?\*\//g, '').trim())
    for (const specifier of dynamicImports) t.equal(specifier, "'ws'", `${file}: the only dynamic import is ws`)
  }
})
