import t from 'tap'
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { WebSocket, WebSocketServer } from 'ws'
import { PreparedFrameWriter, probePreparedFrames, textFrame } from '../lib/connections/prepared-frame.js'
import { FakeSocket } from './fakes/fake-socket.js'

interface Tap {
  teardown: (fn: () => unknown) => void
}

const OPCODE_TEXT = 0x1
const OPCODE_CLOSE = 0x8

/** A client that speaks just enough WebSocket to keep every byte the server sent, frame by frame. */
class RawClient {
  readonly frames: Buffer[] = []
  readonly ended: Promise<void>
  #pending = Buffer.alloc(0)
  #upgraded = false
  #waiters: Array<() => void> = []

  constructor (readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    this.ended = new Promise((resolve) => socket.once('close', () => resolve()))
  }

  async next (count: number, timeoutMs = 5000): Promise<Buffer[]> {
    const deadline = Date.now() + timeoutMs
    while (this.frames.length < count) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`only ${this.frames.length} of ${count} frames within ${timeoutMs} ms`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
    return this.frames.splice(0, count)
  }

  #onData (chunk: Buffer): void {
    this.#pending = Buffer.concat([this.#pending, chunk])
    if (!this.#upgraded) {
      const end = this.#pending.indexOf('\r\n\r\n')
      if (end === -1) return
      if (!this.#pending.subarray(0, end).toString().startsWith('HTTP/1.1 101')) throw new Error('upgrade refused')
      this.#upgraded = true
      this.#pending = this.#pending.subarray(end + 4)
    }
    for (;;) {
      const length = frameLength(this.#pending)
      if (length === null) break
      const frame = Buffer.from(this.#pending.subarray(0, length))
      this.#pending = this.#pending.subarray(length)
      this.frames.push(frame)
      // Answering a close frame by hanging up lets the test see that nothing followed it.
      if (((frame[0] ?? 0) & 0x0f) === OPCODE_CLOSE) this.socket.end()
    }
    for (const wake of this.#waiters.splice(0)) wake()
  }
}

/** Bytes of the first complete frame in `buffer` (header included), or null. */
function frameLength (buffer: Buffer): number | null {
  if (buffer.length < 2) return null
  const second = buffer[1] ?? 0
  const masked = (second & 0x80) !== 0
  let header = 2
  let payload = second & 0x7f
  if (payload === 126) {
    if (buffer.length < 4) return null
    payload = buffer.readUInt16BE(2)
    header = 4
  } else if (payload === 127) {
    if (buffer.length < 10) return null
    payload = Number(buffer.readBigUInt64BE(2))
    header = 10
  }
  const total = header + (masked ? 4 : 0) + payload
  return buffer.length >= total ? total : null
}

/** The frame RFC 6455 prescribes, built by hand to check ws against. */
function expectedFrame (payload: Buffer): Buffer {
  const first = 0x80 | OPCODE_TEXT
  if (payload.length <= 125) return Buffer.concat([Buffer.from([first, payload.length]), payload])
  if (payload.length <= 0xffff) {
    const header = Buffer.from([first, 126, 0, 0])
    header.writeUInt16BE(payload.length, 2)
    return Buffer.concat([header, payload])
  }
  const header = Buffer.alloc(10)
  header[0] = first
  header[1] = 127
  header.writeBigUInt64BE(BigInt(payload.length), 2)
  return Buffer.concat([header, payload])
}

/** A ws server on loopback with one raw client; returns the server's socket for it. */
async function pair (t: Tap): Promise<{ server: WebSocket, client: RawClient }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  t.teardown(() => new Promise<void>((resolve) => {
    for (const socket of wss.clients) socket.terminate()
    wss.close(() => resolve())
  }))
  await once(wss, 'listening')
  const address = wss.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  const accepted = once(wss, 'connection')
  const socket = connect(address.port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  socket.write([
    'GET / HTTP/1.1',
    `Host: 127.0.0.1:${address.port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    'Sec-WebSocket-Version: 13',
    '', ''
  ].join('\r\n'))
  const client = new RawClient(socket)
  const [server] = await accepted as [WebSocket]
  server.on('error', () => {})
  return { server, client }
}

const payloads: Array<[string, Buffer]> = [
  ['ASCII JSON', Buffer.from('{"type":"server-broadcast","message":{"hello":"world"}}')],
  ['multi-byte UTF-8', Buffer.from('{"message":"héllo € 😀 日本語"}')],
  ['empty', Buffer.alloc(0)],
  ['125 bytes (7-bit length)', Buffer.alloc(125, 'a')],
  ['126 bytes (16-bit length)', Buffer.alloc(126, 'b')],
  ['125 bytes of 3-byte characters and 2 ASCII', Buffer.from('€'.repeat(41) + 'ab')],
  ['126 bytes of 3-byte characters', Buffer.from('€'.repeat(42))],
  ['65535 bytes (16-bit length)', Buffer.alloc(65535, 'c')],
  ['65536 bytes (64-bit length)', Buffer.alloc(65536, 'd')],
  ['65536 bytes ending in a 4-byte character', Buffer.concat([Buffer.alloc(65532, 'e'), Buffer.from('😀')])]
]

t.test('the pinned ws has every internal the prepared path relies on', async (t) => {
  // If this fails after a ws upgrade, the hub silently falls back to
  // socket.send (correct but slower): read the reason, then update
  // lib/prepared-frame.ts for the new ws internals.
  t.same(probePreparedFrames(), { ok: true, reason: '' }, 'ws internals changed: see lib/prepared-frame.ts')
  t.equal(new PreparedFrameWriter().enabled, true)
})

t.test('clients receive byte-identical frames through socket.send and the prepared path', async (t) => {
  const { server, client } = await pair(t)
  const writer = new PreparedFrameWriter()
  for (const [name, payload] of payloads) {
    t.same(textFrame(payload), expectedFrame(payload), `${name}: the built frame follows RFC 6455`)
    server.send(payload, { binary: false })
    writer.sendText(server, payload)
    const [viaSend, viaPrepared] = await client.next(2)
    t.ok(viaSend?.equals(expectedFrame(payload)), `${name}: socket.send wrote the expected frame`)
    t.ok(viaPrepared?.equals(viaSend ?? Buffer.alloc(0)), `${name}: the prepared frame is byte-identical (${viaPrepared?.length} bytes)`)
  }
  t.same(writer.counters, { prepared: payloads.length, fallback: 0, built: payloads.length })
})

t.test('one frame is built per message, not per recipient', async (t) => {
  const first = await pair(t)
  const second = await pair(t)
  const writer = new PreparedFrameWriter()
  const data = Buffer.from('{"n":1}')
  writer.sendText(first.server, data)
  writer.sendText(second.server, data)
  const [a] = await first.client.next(1)
  const [b] = await second.client.next(1)
  t.ok(a?.equals(expectedFrame(data)))
  t.ok(b?.equals(expectedFrame(data)))
  t.same(writer.counters, { prepared: 2, fallback: 0, built: 1 })
})

t.test('a prepared frame counts in bufferedAmount until the kernel takes it', async (t) => {
  const { server, client } = await pair(t)
  const writer = new PreparedFrameWriter()
  const payload = Buffer.alloc(200_000, 'x')
  const before = server.bufferedAmount
  writer.sendText(server, payload)
  // Corked until the end of the tick, so the whole frame is still counted.
  t.equal(server.bufferedAmount - before, expectedFrame(payload).length)
  await client.next(1)
  t.equal(server.bufferedAmount, 0, 'and it drains to 0')
})

t.test('a client that does not read builds up bufferedAmount through both paths alike', async (t) => {
  const viaSend = await pair(t)
  const viaPrepared = await pair(t)
  viaSend.client.socket.pause()
  viaPrepared.client.socket.pause()
  const writer = new PreparedFrameWriter({ coalesce: false })
  const payload = Buffer.alloc(100_000, 'y')
  const frames = 400 // 40 MB, far more than loopback socket buffers hold
  for (let i = 0; i < frames; i++) {
    viaSend.server.send(payload, { binary: false })
    writer.sendText(viaPrepared.server, payload)
  }
  await new Promise((resolve) => setImmediate(resolve))
  const total = frames * expectedFrame(payload).length
  const sent = viaSend.server.bufferedAmount
  const prepared = viaPrepared.server.bufferedAmount
  t.ok(sent > total / 2, `socket.send leaves ${sent} of ${total} bytes buffered`)
  t.ok(prepared > total / 2, `the prepared path leaves ${prepared} of ${total} bytes buffered`)
  t.ok(Math.abs(sent - prepared) < total / 4, 'about the same amount, as the kernel took about the same')
  t.equal(writer.counters.prepared, frames)
})

t.test('frames written in one tick keep their order with public sends in between', async (t) => {
  const { server, client } = await pair(t)
  const writer = new PreparedFrameWriter()
  const texts = ['{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}', '{"n":5}']
  writer.sendText(server, Buffer.from(texts[0] ?? ''))
  server.send(texts[1] ?? '')
  writer.sendText(server, Buffer.from(texts[2] ?? ''))
  writer.sendText(server, Buffer.from(texts[3] ?? ''))
  server.send(Buffer.from(texts[4] ?? ''), { binary: false })
  const frames = await client.next(texts.length)
  t.same(frames.map((frame) => frame.subarray(2).toString()), texts)
  t.same(writer.counters, { prepared: 3, fallback: 0, built: 3 })
})

t.test('flush() sends at once what the end of the tick would', async (t) => {
  const { server, client } = await pair(t)
  const writer = new PreparedFrameWriter()
  writer.sendText(server, Buffer.from('{"a":1}'))
  writer.sendText(server, Buffer.from('{"b":2}'))
  writer.flush()
  const frames = await client.next(2)
  t.same(frames.map((frame) => frame.subarray(2).toString()), ['{"a":1}', '{"b":2}'])
})

t.test('nothing is written after the close frame: a closing socket falls back to socket.send', async (t) => {
  const { server, client } = await pair(t)
  const writer = new PreparedFrameWriter()
  writer.sendText(server, Buffer.from('{"before":"close"}'))
  server.close(1000, 'bye')
  writer.sendText(server, Buffer.from('{"after":"close"}'))
  t.equal(server.readyState, WebSocket.CLOSING)
  await client.ended
  t.equal(client.frames.length, 2, 'the text before and the close frame, nothing after')
  t.equal(client.frames[0]?.subarray(2).toString(), '{"before":"close"}')
  t.equal((client.frames[1]?.[0] ?? 0) & 0x0f, OPCODE_CLOSE)
  t.same(writer.counters, { prepared: 1, fallback: 1, built: 1 })
})

t.test('anything that is not a ws socket with the expected internals goes through send()', async (t) => {
  const writer = new PreparedFrameWriter()
  const fake = new FakeSocket()
  writer.sendText(fake as unknown as WebSocket, Buffer.from('{"type":"x"}'))
  t.same(fake.sent, ['{"type":"x"}'])
  t.same(writer.counters, { prepared: 0, fallback: 1, built: 0 })
})

t.test('a disabled writer always uses send()', async (t) => {
  const { server, client } = await pair(t)
  const writer = new PreparedFrameWriter({ enabled: false })
  t.equal(writer.enabled, false)
  const data = Buffer.from('{"off":true}')
  writer.sendText(server, data)
  const [frame] = await client.next(1)
  t.ok(frame?.equals(expectedFrame(data)))
  t.same(writer.counters, { prepared: 0, fallback: 1, built: 0 })
})

t.test('without coalescing, each frame is written at once', async (t) => {
  const { server, client } = await pair(t)
  const writer = new PreparedFrameWriter({ coalesce: false })
  const data = Buffer.from('{"now":true}')
  writer.sendText(server, data)
  const [frame] = await client.next(1)
  t.ok(frame?.equals(expectedFrame(data)))
})
