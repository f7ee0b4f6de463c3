/**
 * Issue 10, item 12: handshakes reset by the client right after the request
 * were keyed to IP "unknown" (the kernel can no longer tell the peer), so
 * they shared one bucket and were logged as `handshake_rate` or `ip_limit`
 * refusals while `abortedBeforeUpgrade` stayed 0. They are now counted as
 * aborted, reserve nothing and are never keyed or logged as "unknown".
 */
import t from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import wsHub from '../lib/index.js'
import { internalsOf } from '../lib/internals.js'
import { build, connect, handshakeStatus, testDefaults, until } from './helpers.js'

type Line = Record<string, unknown> & { msg: string }

function handshake (): string {
  return `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`
}

/** A client that writes a whole handshake and resets the connection at once (RST, not FIN). */
async function writeAndReset (port: number): Promise<void> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write(handshake())
  socket.resetAndDestroy()
  await once(socket, 'close')
}

t.test('handshakes reset by the client right after the request are keyed to IP "unknown": counted as aborted, nothing reserved, the address still served', async (t) => {
  const lines: Line[] = []
  const stream = { write: (line: string) => { lines.push(JSON.parse(line) as Line) } }
  // A handshake rate and per-IP limit small enough that the resets, had
  // they been counted under any one key, would have exhausted it.
  const { port, wsUrl, app } = await build(t, { handshakeRateLimit: { max: 20, intervalMs: 60_000 }, maxConnectionsPerIp: 5 }, { logger: { level: 'debug', stream } })
  const limiter = internalsOf(app.wsHub).cluster.limiter
  const reserved: string[] = []
  const reserve = limiter.reserve.bind(limiter)
  limiter.reserve = async (ip, limits) => {
    reserved.push(ip)
    return reserve(ip, limits)
  }

  const resets = 100
  for (let n = 0; n < resets; n++) await writeAndReset(port)
  await until(() => app.wsHub.stats().handshakes.abortedBeforeUpgrade === resets, 5000, `${resets} aborted handshakes (have ${app.wsHub.stats().handshakes.abortedBeforeUpgrade})`)

  const { handshakes } = app.wsHub.stats()
  t.match(handshakes, { accepted: 0, rejectedHandshakeRate: 0, rejectedIpLimit: 0, rejectedTotalLimit: 0, abortedBeforeUpgrade: resets })
  t.same(reserved, [], 'a client that is gone reserves nothing')
  t.equal(await limiter.totalCount(), 0)
  t.notOk(lines.some((l) => l.ip === 'unknown'), 'no line about an "unknown" address')
  t.notOk(lines.some((l) => l.msg === 'ws-hub: handshake rejected'), 'not logged as refusals')

  // The same address, well behaved, is still admitted and keyed by its address.
  const client = await connect(wsUrl)
  t.same(reserved, ['127.0.0.1'])
  t.equal(app.wsHub.stats().handshakes.accepted, 1)
  client.close()
  await client.closed
})

t.test('a hub listening on a Unix socket (no peer address) still admits clients', async (t) => {
  const path = join(tmpdir(), `ws-hub-${process.pid}-${randomBytes(4).toString('hex')}.sock`)
  const app = Fastify({ logger: false })
  await app.register(wsHub, testDefaults({}))
  await app.listen({ path })
  t.teardown(async () => {
    await app.close()
    await rm(path, { force: true })
  })
  const refused = await handshakeStatus(`ws+unix://${path}:/ws`)
  t.equal(refused.status, 101)
  refused.socket?.close()
  t.equal(app.wsHub.stats().handshakes.abortedBeforeUpgrade, 0)
})
