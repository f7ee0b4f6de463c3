/**
 * Issue 10, item 11: every malformed frame logged a warning with a full
 * stack trace, so any client could make the server write a stack trace per
 * frame (or per socket it opened). Protocol violations are now counted
 * (`protocolViolations`, `ws_hub_protocol_violations_total{reason}`) and
 * logged rate-limited, without a stack, at info.
 */
import t from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { build, connect, handshakeStatus, until } from './helpers.js'

type Line = Record<string, unknown> & { level: number, msg: string }

/** A logger stream that keeps every line, parsed. */
function capture (): { lines: Line[], stream: { write: (line: string) => void } } {
  const lines: Line[] = []
  return { lines, stream: { write: (line: string) => { lines.push(JSON.parse(line) as Line) } } }
}

/**
 * The hub's lines from `from` on (after its start-up lines), without the
 * documented one-per-connection open and close lines.
 */
function noise (lines: Line[], from: number): Line[] {
  return lines.slice(from).filter((l) => l.msg.startsWith('ws-hub:') && l.msg !== 'ws-hub: connection opened' && l.msg !== 'ws-hub: connection closed')
}

function hasStack (line: Line): boolean {
  return 'err' in line || JSON.stringify(line).includes('    at ')
}

t.test('every malformed frame logs a warning with a full stack trace: 200 bad frames, a bounded number of lines, none with a stack', async (t) => {
  const { lines, stream } = capture()
  // No rate limit: every one of the 200 frames must reach the parser.
  const { wsUrl, url, app } = await build(t, { messageRateLimit: false }, { logger: { level: 'info', stream } })
  const started = lines.length
  const client = await connect(wsUrl)
  const bad = [
    () => client.send('{not json'),
    () => client.send(JSON.stringify({ no: 'type' })),
    () => client.send(JSON.stringify({ type: 'subscribe', topic: 42 })),
    () => client.socket.send(Buffer.from([1, 2, 3]), { binary: true })
  ]
  for (let n = 0; n < 200; n++) bad[n % bad.length]?.()
  for (let n = 0; n < 200; n++) await client.next('error')

  t.equal(app.wsHub.stats().protocolViolations, 200, 'every malformed frame counted')
  const scrape = await (await fetch(`${url}/metrics`)).text()
  t.match(scrape, /ws_hub_protocol_violations_total\{reason="invalid_json"\} 50\n/)
  t.match(scrape, /ws_hub_protocol_violations_total\{reason="invalid_message"\} 100\n/)
  t.match(scrape, /ws_hub_protocol_violations_total\{reason="unsupported_binary"\} 50\n/)
  t.match(scrape, /ws_hub_protocol_violations_total\{reason="invalid_utf8"\} 0\n/, 'every reason is exported from the start')

  const logged = noise(lines, started)
  t.ok(logged.length <= 3, `${logged.length} lines for 200 bad frames (at most one per reason per interval)`)
  t.ok(logged.length > 0, 'the first of each kind is still logged')
  t.notOk(logged.some(hasStack), 'no stack traces')
  t.notOk(logged.some((l) => l.level >= 40), 'nothing above info: a client\'s bad input is not the operator\'s warning')
  t.match(logged[0], { msg: 'ws-hub: protocol violation', reason: String, clientId: client.clientId, ip: '127.0.0.1', suppressedSinceLastLog: 0 })
  t.notOk(JSON.stringify(logged).includes('not json'), 'no bytes of the input in the log')
  client.close()
})

/** An upgraded raw TCP socket, for frames no WebSocket client would send. */
async function rawUpgrade (port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`)
  const [head] = await once(socket, 'data') as [Buffer]
  if (!head.toString().startsWith('HTTP/1.1 101')) throw new Error(`not upgraded: ${head.toString()}`)
  return socket
}

/** A client frame: masked unless told otherwise, payload length as given in the header. */
function frame (first: number, payload: Buffer, options: { masked?: boolean, declaredLength?: number } = {}): Buffer {
  const masked = options.masked ?? true
  const length = options.declaredLength ?? payload.length
  const header = length <= 125
    ? Buffer.from([first, (masked ? 0x80 : 0) | length])
    : Buffer.from([first, (masked ? 0x80 : 0) | 126, length >> 8, length & 0xff])
  if (!masked) return Buffer.concat([header, payload])
  const mask = randomBytes(4)
  const body = Buffer.from(payload.map((byte, i) => byte ^ (mask[i % 4] ?? 0)))
  return Buffer.concat([header, mask, body])
}

/** ws-level violations, each closing its socket with its own code. */
const FRAMING = [
  { name: 'invalid UTF-8', bytes: () => frame(0x81, Buffer.from([0xff, 0xfe, 0xfd])), code: 1007, reason: 'invalid_utf8' },
  { name: 'reserved opcode', bytes: () => frame(0x83, Buffer.from('x')), code: 1002, reason: 'bad_frame' },
  { name: 'unmasked client frame', bytes: () => frame(0x81, Buffer.from('{}'), { masked: false }), code: 1002, reason: 'bad_frame' },
  { name: 'RSV bits set', bytes: () => frame(0xf1, Buffer.from('x')), code: 1002, reason: 'bad_frame' },
  { name: 'over maxPayload', bytes: () => frame(0x81, Buffer.alloc(0), { declaredLength: 4000 }), code: 1009, reason: 'message_too_big' }
] as const

/** The close code in the server's close frame. */
async function closeCode (socket: net.Socket): Promise<number> {
  let received = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => { received = Buffer.concat([received, chunk]) })
  await once(socket, 'close')
  return (received[0] ?? 0) === 0x88 && received.length >= 4 ? received.readUInt16BE(2) : 0
}

t.test('ws-level violations on raw sockets: counted by reason, logged a bounded number of times, no stack, no warning', async (t) => {
  const { lines, stream } = capture()
  const { port, url, wsUrl, app } = await build(t, { maxPayload: 1024, handshakeRateLimit: false }, { logger: { level: 'info', stream } })
  const started = lines.length
  const rounds = 20
  const wrongCodes: string[] = []
  for (let round = 0; round < rounds; round++) {
    for (const abuse of FRAMING) {
      const socket = await rawUpgrade(port)
      const closed = closeCode(socket)
      socket.write(abuse.bytes())
      const code = await closed
      if (code !== abuse.code) wrongCodes.push(`${abuse.name}: ${code}, not ${abuse.code}`)
    }
  }
  t.same(wrongCodes, [], 'each closed with its RFC 6455 code')
  await until(() => app.wsHub.stats().connections === 0)
  t.equal(app.wsHub.stats().protocolViolations, rounds * FRAMING.length)
  const scrape = await (await fetch(`${url}/metrics`)).text()
  t.match(scrape, new RegExp(`ws_hub_protocol_violations_total\\{reason="invalid_utf8"\\} ${rounds}\\n`))
  t.match(scrape, new RegExp(`ws_hub_protocol_violations_total\\{reason="bad_frame"\\} ${rounds * 3}\\n`))
  t.match(scrape, new RegExp(`ws_hub_protocol_violations_total\\{reason="message_too_big"\\} ${rounds}\\n`))

  const logged = noise(lines, started)
  t.ok(logged.length <= 4, `${logged.length} lines for ${rounds * FRAMING.length} violating sockets`)
  t.notOk(logged.some(hasStack), 'no stack traces')
  t.notOk(logged.some((l) => l.level >= 40), 'no warnings')
  t.equal((await handshakeStatus(wsUrl)).status, 101, 'still serving')
})

t.test('refused handshakes: each one counted, logged at most once per reason and interval', async (t) => {
  const { lines, stream } = capture()
  const { wsUrl, app } = await build(t, { allowedOrigins: ['https://app.example'] }, { logger: { level: 'info', stream } })
  const started = lines.length
  const statuses = new Set<number>()
  for (let n = 0; n < 50; n++) statuses.add((await handshakeStatus(wsUrl, { origin: 'https://evil.example' })).status)
  t.same([...statuses], [403])
  t.equal(app.wsHub.stats().handshakes.rejectedOrigin, 50)
  const refusals = noise(lines, started).filter((l) => l.msg === 'ws-hub: handshake rejected')
  t.equal(refusals.length, 1, 'one line, not fifty')
  t.match(refusals[0], { ip: '127.0.0.1', reason: 'origin_not_allowed', level: 30 })
})
