import t from 'tap'
import net from 'node:net'
import { build, connect, handshakeStatus, until } from './helpers.js'
import { normalizeIp } from '../lib/index.js'
import type { WebSocket } from 'ws'
import { internalsOf } from '../lib/internals.js'

t.test('normalizeIp folds IPv4-mapped IPv6 to IPv4', async (t) => {
  t.equal(normalizeIp('::ffff:1.2.3.4'), '1.2.3.4')
  t.equal(normalizeIp('::FFFF:10.0.0.1'), '10.0.0.1')
  t.equal(normalizeIp('1.2.3.4'), '1.2.3.4')
  t.equal(normalizeIp('2001:db8::1'), '2001:db8:0:0:0:0:0:0/64')
  t.equal(normalizeIp('::ffff:zzz'), '::ffff:zzz', 'not an IPv4 tail: left alone')
  t.equal(normalizeIp(undefined), 'unknown')
})

t.test('50 concurrent handshakes from one IP: exactly the limit succeed, counts return to 0', async (t) => {
  const limit = 20
  const { wsUrl, app } = await build(t, { maxConnectionsPerIp: limit, retryAfter: 7 })
  const results = await Promise.all(Array.from({ length: 50 }, async () => handshakeStatus(wsUrl)))
  const opened = results.filter((r) => r.status === 101)
  const refused = results.filter((r) => r.status === 429)
  t.equal(opened.length, limit)
  t.equal(refused.length, 50 - limit)
  const body = JSON.parse(refused[0]?.body ?? '{}')
  t.same(body, { statusCode: 429, error: 'Too Many Requests', code: 'ip_limit', message: `too many connections from this address (limit ${limit})` })
  t.equal(await internalsOf(app.wsHub).cluster.limiter.ipCount('127.0.0.1'), limit)
  t.equal(internalsOf(app.wsHub).connections.ipCount('127.0.0.1'), limit)
  t.equal(app.wsHub.stats().handshakes.rejectedIpLimit, 50 - limit)

  for (const r of opened) r.socket?.close()
  await until(async () => (await internalsOf(app.wsHub).cluster.limiter.ipCount('127.0.0.1')) === 0, 3000, 'slots released')
  t.equal(internalsOf(app.wsHub).connections.ipCount('127.0.0.1'), 0)
  t.equal(await internalsOf(app.wsHub).cluster.limiter.totalCount(), 0)
  const again = await handshakeStatus(wsUrl)
  t.equal(again.status, 101, 'a slot is free again')
  again.socket?.close()
})

t.test('429 carries Retry-After', async (t) => {
  const { wsUrl } = await build(t, { maxConnectionsPerIp: 1, retryAfter: 7 })
  const first = await connect(wsUrl)
  const headers = await new Promise<Record<string, unknown>>((resolve) => {
    const http = net.connect(Number(new URL(wsUrl).port), '127.0.0.1', () => {
      http.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
    })
    let text = ''
    http.on('data', (d) => { text += d.toString() })
    http.on('close', () => {
      const lines = text.split('\r\n')
      resolve({ status: lines[0], retryAfter: lines.find((l) => l.toLowerCase().startsWith('retry-after')) })
    })
  })
  t.match(headers.status, /429/)
  t.equal(headers.retryAfter, 'retry-after: 7')
  first.close()
})

t.test('over the total cap: 503, and other IPs count toward it', async (t) => {
  const { wsUrl, app } = await build(t, { maxConnections: 3, maxConnectionsPerIp: 10 })
  const held: WebSocket[] = []
  for (const localAddress of ['127.0.0.1', '127.0.0.2', '127.0.0.3']) {
    const r = await handshakeStatus(wsUrl, { localAddress })
    t.equal(r.status, 101)
    if (r.socket) held.push(r.socket)
  }
  const refused = await handshakeStatus(wsUrl, { localAddress: '127.0.0.4' })
  t.equal(refused.status, 503)
  t.equal(JSON.parse(refused.body ?? '{}').code, 'total_limit')
  t.equal(app.wsHub.stats().handshakes.rejectedTotalLimit, 1)
  for (const s of held) s.close()
  await until(async () => (await internalsOf(app.wsHub).cluster.limiter.totalCount()) === 0)
})

t.test('a plain HTTP GET on the path gets 400 and reserves nothing', async (t) => {
  const { url, app } = await build(t)
  const res = await fetch(`${url}/ws`)
  t.equal(res.status, 400)
  t.same(await res.json(), { statusCode: 400, error: 'Bad Request', code: 'upgrade_required', message: 'this endpoint accepts WebSocket connections only' })
  t.equal(await internalsOf(app.wsHub).cluster.limiter.totalCount(), 0)
})

t.test('a handshake ws rejects (bad Sec-WebSocket-Key) releases its slot', async (t) => {
  const { wsUrl, app } = await build(t, { maxConnectionsPerIp: 2 })
  const port = Number(new URL(wsUrl).port)
  const statuses = await Promise.all(Array.from({ length: 10 }, async () => new Promise<string>((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: not-a-key\r\n\r\n')
    })
    let text = ''
    socket.on('data', (d) => { text += d.toString() })
    socket.on('close', () => resolve(text.split('\r\n')[0] ?? ''))
  })))
  t.ok(statuses.every((s) => /^HTTP\/1\.1 (400|429)/.test(s)), 'refused')
  await until(async () => (await internalsOf(app.wsHub).cluster.limiter.ipCount('127.0.0.1')) === 0, 3000, 'slots released')
  const ok = await handshakeStatus(wsUrl)
  t.equal(ok.status, 101)
  ok.socket?.close()
})

t.test('a client that hangs up while a later hook runs releases its slot', async (t) => {
  let entered = 0
  const { wsUrl, app } = await build(t, { maxConnectionsPerIp: 5 }, {}, (app) => {
    app.addHook('preHandler', async () => {
      entered++
      await new Promise((resolve) => setTimeout(resolve, 200))
    })
  })
  const port = Number(new URL(wsUrl).port)
  await Promise.all(Array.from({ length: 20 }, async () => new Promise<void>((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
      setTimeout(() => socket.destroy(), 50)
    })
    socket.on('close', () => resolve())
    socket.on('error', () => {})
  })))
  t.ok(entered > 0, 'some reached the slow hook holding a slot')
  await until(async () => (await internalsOf(app.wsHub).cluster.limiter.ipCount('127.0.0.1')) === 0, 3000, 'slots released')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(await internalsOf(app.wsHub).cluster.limiter.ipCount('127.0.0.1'), 0, 'and never negative or re-taken')
  t.equal(internalsOf(app.wsHub).connections.count, 0)
})

// Fastify 5.12 makes a bare hop count fail closed, so the proxy is named by
// address: entries are walked from the right and trusted only while they are
// listed proxies, so a client-written leftmost entry never wins.
t.test('with trustProxy naming the proxy, the rightmost untrusted address is the client, and mapped IPv4 counts as IPv4', async (t) => {
  const { wsUrl, app } = await build(t, { maxConnectionsPerIp: 1 }, { trustProxy: '127.0.0.1' })
  const a = await handshakeStatus(wsUrl, { headers: { 'x-forwarded-for': '1.1.1.1, 10.0.0.9' } })
  t.equal(a.status, 101)
  t.equal(await internalsOf(app.wsHub).cluster.limiter.ipCount('10.0.0.9'), 1)
  const spoofed = await handshakeStatus(wsUrl, { headers: { 'x-forwarded-for': '2.2.2.2, ::ffff:10.0.0.9' } })
  t.equal(spoofed.status, 429, 'a new leftmost entry does not escape the limit')
  const other = await handshakeStatus(wsUrl, { headers: { 'x-forwarded-for': '10.0.0.10' } })
  t.equal(other.status, 101)
  a.socket?.close()
  other.socket?.close()
})

t.test('normalizeIp keys IPv6 by its network prefix', async (t) => {
  t.equal(normalizeIp('2001:db8:1:2:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2:0:0:0:0/64')
  t.equal(normalizeIp('2001:db8:1:2::1'), '2001:db8:1:2:0:0:0:0/64', 'same /64, same key')
  t.equal(normalizeIp('2001:DB8:1:3::1'), '2001:db8:1:3:0:0:0:0/64', 'another /64, another key')
  t.equal(normalizeIp('2001:db8:1:2:aaaa::1', 48), '2001:db8:1:0:0:0:0:0/48')
  t.equal(normalizeIp('2001:db8:1:2:aaaa::1', 56), '2001:db8:1:0:0:0:0:0/56')
  t.equal(normalizeIp('2001:db8:1:2ff:aaaa::1', 56), '2001:db8:1:200:0:0:0:0/56')
  t.equal(normalizeIp('::1', 128), '0:0:0:0:0:0:0:1/128')
  t.equal(normalizeIp('fe80::1%eth0'), 'fe80::1%eth0', 'zone ids are left whole')
})

t.test('IPv6 clients in one /64 share one per-IP budget', async (t) => {
  const { wsUrl, app } = await build(t, { maxConnectionsPerIp: 1 }, { trustProxy: '127.0.0.1' })
  const a = await handshakeStatus(wsUrl, { headers: { 'x-forwarded-for': '2001:db8:0:1::a' } })
  t.equal(a.status, 101)
  const sameNet = await handshakeStatus(wsUrl, { headers: { 'x-forwarded-for': '2001:db8:0:1:ffff::b' } })
  t.equal(sameNet.status, 429)
  const otherNet = await handshakeStatus(wsUrl, { headers: { 'x-forwarded-for': '2001:db8:0:2::a' } })
  t.equal(otherNet.status, 101)
  t.equal(await internalsOf(app.wsHub).cluster.limiter.ipCount('2001:db8:0:1:0:0:0:0/64'), 1)
  a.socket?.close()
  otherNet.socket?.close()
})

t.test('a registry that cannot reserve (backend down) refuses with 503 and Retry-After', async (t) => {
  const { MemoryLimiter } = await import('../lib/cluster/memory/memory-limiter.js')
  const { MemoryDirectory } = await import('../lib/cluster/memory/memory-directory.js')
  const limiter = new MemoryLimiter()
  limiter.reserve = async () => { throw new Error('redis down') }
  const { wsUrl, app } = await build(t, { registry: { type: 'custom', limiter, directory: new MemoryDirectory() } })
  const r = await handshakeStatus(wsUrl)
  t.equal(r.status, 503)
  t.equal(JSON.parse(r.body ?? '{}').code, 'registry_unavailable')
  t.equal(app.wsHub.stats().handshakes.rejectedRegistryDown, 1)
})
