import t from 'tap'
import { SendWriter } from '../lib/connections/send-writer.js'
import { PreparedFrameWriter } from '../lib/connections/prepared-frame.js'
import type { SocketWriter } from '../lib/connections/socket-writer.js'
import { createSocketWriter } from '../lib/connections/create-socket-writer.js'
import { expectedFrame, pair } from './helpers/raw-client.js'

interface WriterCase {
  name: string
  coalesce: boolean
  make: () => SocketWriter
}

const writers: WriterCase[] = [
  { name: 'send', coalesce: false, make: () => new SendWriter({ coalesce: false }) },
  { name: 'send, coalesced', coalesce: true, make: () => new SendWriter() },
  { name: 'prepared', coalesce: false, make: () => new PreparedFrameWriter({ coalesce: false }) },
  { name: 'prepared, coalesced', coalesce: true, make: () => new PreparedFrameWriter() }
]

const payloads: Buffer[] = [
  Buffer.from('{"type":"server-broadcast","message":{"hello":"world"}}'),
  Buffer.from('{"message":"héllo € 😀 日本語"}'),
  Buffer.alloc(0),
  Buffer.alloc(125, 'a'),
  Buffer.alloc(126, 'b'),
  Buffer.alloc(65535, 'c'),
  Buffer.alloc(65536, 'd')
]

const nextTurn = async (): Promise<void> => { await new Promise((resolve) => setImmediate(resolve)) }

t.test('the factory picks the writer by the preparedFrames option', async (t) => {
  t.ok(createSocketWriter({ preparedFrames: true }) instanceof PreparedFrameWriter)
  t.ok(createSocketWriter({ preparedFrames: false }) instanceof SendWriter)
})

t.test('every writer puts byte-identical frames on the wire, in order', async (t) => {
  const received: Buffer[][] = []
  for (const { make } of writers) {
    const { server, client } = await pair(t)
    const writer = make()
    // All in one tick, so the coalescing writers send them in one writev.
    for (const payload of payloads) writer.write(server, payload)
    received.push(await client.next(payloads.length))
  }
  const expected = payloads.map(expectedFrame)
  writers.forEach(({ name }, i) => {
    t.same(received[i]?.map((frame) => frame.toString('hex')), expected.map((frame) => frame.toString('hex')), `${name}: the frames RFC 6455 prescribes`)
  })
})

for (const { name, coalesce, make } of writers) {
  t.test(`${name}: unsentBytes leaves out this tick's corked bytes and keeps what a client does not read`, async (t) => {
    const frame = Buffer.alloc(100_000, 'x')
    const frameBytes = expectedFrame(frame).length

    const reading = await pair(t)
    const writer = make()
    writer.write(reading.server, frame)
    if (coalesce) {
      t.equal(reading.server.bufferedAmount, frameBytes, 'the frame waits in bufferedAmount, corked until the tick ends')
      t.equal(writer.unsentBytes(reading.server), 0, 'which is not charged to the client')
    } else {
      t.equal(writer.unsentBytes(reading.server), reading.server.bufferedAmount, 'nothing is held back: unsent is bufferedAmount')
    }
    await reading.client.next(1)
    t.equal(writer.unsentBytes(reading.server), 0, 'a reading client has nothing unsent')

    const stalled = await pair(t)
    stalled.client.socket.pause()
    const frames = 400 // 40 MB over several ticks, far more than loopback socket buffers hold
    for (let i = 0; i < frames; i++) {
      writer.write(stalled.server, frame)
      if (i % 10 === 9) await nextTurn()
    }
    await nextTurn()
    const backlog = writer.unsentBytes(stalled.server)
    t.ok(backlog > (frames * frameBytes) / 2, `a client that does not read leaves ${backlog} of ${frames * frameBytes} bytes unsent`)
    t.equal(backlog, stalled.server.bufferedAmount, 'after the tick, every buffered byte is charged to it')
    writer.write(stalled.server, frame)
    t.equal(writer.unsentBytes(stalled.server), coalesce ? backlog : backlog + frameBytes, coalesce ? 'a frame written this tick is not charged until the tick ends' : 'a frame written now is charged at once')
    writer.flush()
    t.equal(writer.unsentBytes(stalled.server), backlog + frameBytes, 'and is charged once flushed')
  })
}
