/**
 * The hostile-input battery: what a public endpoint meets on day one.
 * Every input must end in an error frame or a named close code, with the
 * process alive, other clients unaffected and every counter back to zero.
 */
import t from 'tap'
import net from 'node:net'
import v8 from 'node:v8'
import vm from 'node:vm'
import { createRequire } from 'node:module'
import fc from 'fast-check'
import { WebSocket } from 'ws'
import { build, connect, handshakeStatus, until, type Frame } from './helpers.js'
import { BuiltInClientFrames } from '../lib/index.js'
import { internalsOf } from '../lib/internals.js'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void
const heapUsed = (): number => { gc(); gc(); return process.memoryUsage().heapUsed }

const require = createRequire(import.meta.url)

t.test('the ws that @fastify/websocket resolves is >= 8.21 (fragment and payload limits)', async (t) => {
  const fromPlugin = createRequire(require.resolve('@fastify/websocket'))
  const version = (fromPlugin('ws/package.json') as { version: string }).version
  const [major = 0, minor = 0] = version.split('.').map(Number)
  t.ok(major > 8 || (major === 8 && minor >= 21), `ws ${version}`)
})

t.test('oversize in one frame and across many fragments -> 1009, heap not grown', async (t) => {
  const { wsUrl, app } = await build(t, { maxPayload: 64 * 1024, handshakeRateLimit: false })
  const bystander = await connect(wsUrl)
  const before = heapUsed()
  for (let round = 0; round < 20; round++) {
    const whole = await connect(wsUrl)
    whole.socket.send(Buffer.alloc(1024 * 1024, 0x61), { binary: false })
    t.equal((await whole.closed).code, 1009)

    const fragmented = await connect(wsUrl)
    const chunk = Buffer.alloc(8 * 1024, 0x62)
    for (let n = 0; n < 64 && fragmented.socket.readyState === WebSocket.OPEN; n++) {
      fragmented.socket.send(chunk, { binary: false, fin: false })
    }
    t.equal((await fragmented.closed).code, 1009)
  }
  await until(() => internalsOf(app.wsHub).connections.count === 1)
  const grown = heapUsed() - before
  t.ok(grown < 8 * 1024 * 1024, `heap grew ${Math.round(grown / 1024)} KiB after 40 refused megabyte messages`)
  bystander.send({ type: 'ping', id: 'b' })
  t.equal((await bystander.next('pong')).id, 'b')
})

t.test('a flood of tiny fragments is closed by ws\' fragment limit', async (t) => {
  const { wsUrl } = await build(t)
  const client = await connect(wsUrl)
  for (let n = 0; n < 20_000 && client.socket.readyState === WebSocket.OPEN; n++) {
    client.socket.send('x', { binary: false, fin: false })
  }
  t.equal((await client.closed).code, 1008)
})

const builtIn = Object.keys(BuiltInClientFrames)

/** Inputs that must each be answered with exactly one error frame of the given code. */
const hostile = fc.oneof(
  fc.string({ maxLength: 200 })
    .filter((s) => { try { JSON.parse(s); return false } catch { return true } })
    .map((text) => ({ text, code: 'invalid_json' })),
  fc.jsonValue({ maxDepth: 4 })
    .filter((v) => v === null || typeof v !== 'object' || Array.isArray(v) || typeof (v as { type?: unknown }).type !== 'string')
    .map((v) => ({ text: JSON.stringify(v), code: 'invalid_message' })),
  fc.string({ minLength: 1, maxLength: 64 })
    .filter((type) => !builtIn.includes(type))
    .map((type) => ({ text: JSON.stringify({ type, message: 1 }), code: 'unknown_type' })),
  fc.record({ message: fc.jsonValue({ maxDepth: 3 }) })
    .map((extra) => ({ text: JSON.stringify({ type: 'direct', ...extra }), code: 'invalid_message' })),
  fc.oneof(fc.integer(), fc.constant(''), fc.constant('a b'), fc.constant('x'.repeat(101)), fc.constant(null), fc.constant('<x>'))
    .map((topic) => ({ text: JSON.stringify({ type: 'subscribe', topic }), code: 'invalid_message' })),
  fc.constantFrom('broadcast', 'publish')
    .map((type) => ({ text: JSON.stringify({ type, topic: 'ok' }), code: 'invalid_message' })),
  fc.record({ id: fc.oneof(fc.object(), fc.boolean(), fc.constant(''), fc.constant('z'.repeat(129))) })
    .map(({ id }) => ({ text: JSON.stringify({ type: 'ping', id }), code: 'invalid_message' })),
  fc.integer({ min: 33, max: 200 })
    .map((depth) => ({ text: '{"type":"broadcast","message":' + '['.repeat(depth) + ']'.repeat(depth) + '}', code: 'invalid_message' }))
)

t.test('20k random and malformed messages: each answered with an error frame; nothing else breaks', async (t) => {
  const { wsUrl, app } = await build(t, { messageRateLimit: false })
  const bystander = await connect(wsUrl)
  const attacker = await connect(wsUrl)
  const inputs = fc.sample(hostile, { numRuns: 20_000, seed: 42 })
  const batch = 500
  let answered = 0
  for (let start = 0; start < inputs.length; start += batch) {
    const slice = inputs.slice(start, start + batch)
    for (const input of slice) attacker.socket.send(input.text)
    for (const input of slice) {
      const frame: Frame = await attacker.next()
      if (frame.type !== 'error' || frame.code !== input.code) {
        t.fail(`${input.text.slice(0, 120)} -> ${JSON.stringify(frame).slice(0, 200)}, wanted ${input.code}`)
        return
      }
      answered++
    }
  }
  t.equal(answered, 20_000, 'every message got its error frame, in order')
  t.equal(attacker.socket.readyState, WebSocket.OPEN, 'bad input never closed the connection')
  t.same(bystander.frames, [], 'the bystander saw nothing')
  bystander.send({ type: 'ping', id: 'still here' })
  t.equal((await bystander.next('pong')).id, 'still here')
  t.equal(app.wsHub.stats().errorsSent, 20_000)
})

t.test('50 parallel handshakes from one IP with a slow authenticate: exactly the limit succeed, counts return to 0', async (t) => {
  const { wsUrl, app } = await build(t, {
    maxConnectionsPerIp: 10,
    handshakeRateLimit: false,
    authenticate: async () => {
      await new Promise((resolve) => setTimeout(resolve, 100))
      return { userId: 'u' }
    },
    maxConnectionsPerUser: 100
  })
  const results = await Promise.all(Array.from({ length: 50 }, async () => handshakeStatus(wsUrl)))
  t.equal(results.filter((r) => r.status === 101).length, 10)
  t.equal(results.filter((r) => r.status === 429).length, 40)
  for (const r of results) r.socket?.close()
  await until(async () => (await internalsOf(app.wsHub).cluster.limiter.ipCount('127.0.0.1')) === 0 && internalsOf(app.wsHub).connections.count === 0)
  t.equal(await internalsOf(app.wsHub).cluster.limiter.totalCount(), 0)
})

t.test('1000 clients that hang up mid-authentication or send a bad Sec-WebSocket-Key: counts and handles return to baseline', async (t) => {
  let authenticating = 0
  const { wsUrl, app } = await build(t, {
    maxConnectionsPerIp: 2000,
    maxConnections: 5000,
    handshakeRateLimit: false,
    authenticate: async () => {
      authenticating++
      await new Promise((resolve) => setTimeout(resolve, 50))
      return { userId: 'u' }
    },
    maxConnectionsPerUser: 5000
  })
  const port = Number(new URL(wsUrl).port)
  const handlesBefore = activeHandles()
  const attack = (badKey: boolean) => new Promise<void>((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(`GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${badKey ? 'nope' : 'dGhlIHNhbXBsZSBub25jZQ=='}\r\n\r\n`)
      if (!badKey) setTimeout(() => socket.destroy(), 10)
    })
    socket.on('data', () => socket.destroy())
    socket.on('close', () => resolve())
    socket.on('error', () => {})
  })
  for (let wave = 0; wave < 10; wave++) {
    await Promise.all(Array.from({ length: 100 }, async (_, n) => attack(n % 2 === 0)))
  }
  t.ok(authenticating > 100, 'many were inside authenticate when they hung up')
  await until(async () => (await internalsOf(app.wsHub).cluster.limiter.totalCount()) === 0, 10_000, 'slots released')
  t.equal(await internalsOf(app.wsHub).cluster.limiter.ipCount('127.0.0.1'), 0)
  t.equal(internalsOf(app.wsHub).connections.count, 0)
  await until(() => activeHandles() <= handlesBefore, 10_000, 'handles back to baseline')
  const ok = await handshakeStatus(wsUrl)
  t.equal(ok.status, 101, 'the hub still serves')
  ok.socket?.close()
})

function activeHandles (): number {
  return (process as unknown as { _getActiveHandles: () => unknown[] })._getActiveHandles().length
}
