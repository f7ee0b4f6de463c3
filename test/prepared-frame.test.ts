import t from 'tap'
import { WebSocket } from 'ws'
import { PreparedFrameWriter, probePreparedFrames, textFrame } from '../lib/connections/prepared-frame.js'
import { FakeSocket } from './fakes/fake-socket.js'
import { expectedFrame, OPCODE_CLOSE, pair } from './helpers/raw-client.js'

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
    writer.write(server, payload)
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
  writer.write(first.server, data)
  writer.write(second.server, data)
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
  writer.write(server, payload)
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
    writer.write(viaPrepared.server, payload)
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
  writer.write(server, Buffer.from(texts[0] ?? ''))
  server.send(texts[1] ?? '')
  writer.write(server, Buffer.from(texts[2] ?? ''))
  writer.write(server, Buffer.from(texts[3] ?? ''))
  server.send(Buffer.from(texts[4] ?? ''), { binary: false })
  const frames = await client.next(texts.length)
  t.same(frames.map((frame) => frame.subarray(2).toString()), texts)
  t.same(writer.counters, { prepared: 3, fallback: 0, built: 3 })
})

t.test('flush() sends at once what the end of the tick would', async (t) => {
  const { server, client } = await pair(t)
  const writer = new PreparedFrameWriter()
  writer.write(server, Buffer.from('{"a":1}'))
  writer.write(server, Buffer.from('{"b":2}'))
  writer.flush()
  const frames = await client.next(2)
  t.same(frames.map((frame) => frame.subarray(2).toString()), ['{"a":1}', '{"b":2}'])
})

t.test('nothing is written after the close frame: a closing socket falls back to socket.send', async (t) => {
  const { server, client } = await pair(t)
  const writer = new PreparedFrameWriter()
  writer.write(server, Buffer.from('{"before":"close"}'))
  server.close(1000, 'bye')
  writer.write(server, Buffer.from('{"after":"close"}'))
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
  writer.write(fake as unknown as WebSocket, Buffer.from('{"type":"x"}'))
  t.same(fake.sent, ['{"type":"x"}'])
  t.same(writer.counters, { prepared: 0, fallback: 1, built: 0 })
})

t.test('a disabled writer always uses send()', async (t) => {
  const { server, client } = await pair(t)
  const writer = new PreparedFrameWriter({ enabled: false })
  t.equal(writer.enabled, false)
  const data = Buffer.from('{"off":true}')
  writer.write(server, data)
  const [frame] = await client.next(1)
  t.ok(frame?.equals(expectedFrame(data)))
  t.same(writer.counters, { prepared: 0, fallback: 1, built: 0 })
})

t.test('without coalescing, each frame is written at once', async (t) => {
  const { server, client } = await pair(t)
  const writer = new PreparedFrameWriter({ coalesce: false })
  const data = Buffer.from('{"now":true}')
  writer.write(server, data)
  const [frame] = await client.next(1)
  t.ok(frame?.equals(expectedFrame(data)))
})
