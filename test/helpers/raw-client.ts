import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { WebSocketServer, type WebSocket } from 'ws'

export interface Tap {
  teardown: (fn: () => unknown) => void
}

export const OPCODE_TEXT = 0x1
export const OPCODE_CLOSE = 0x8

/** A client that speaks just enough WebSocket to keep every byte the server sent, frame by frame. */
export class RawClient {
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
export function expectedFrame (payload: Buffer): Buffer {
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

/**
 * A ws server on loopback, closed (its sockets terminated) when the test
 * ends, and the promise of the first server socket it accepts.
 */
export async function loopbackServer (t: Tap): Promise<{ port: number, accepted: Promise<WebSocket> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  t.teardown(() => new Promise<void>((resolve) => {
    for (const socket of wss.clients) socket.terminate()
    wss.close(() => resolve())
  }))
  await once(wss, 'listening')
  const address = wss.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  const accepted = once(wss, 'connection').then(([socket]) => {
    const server = socket as WebSocket
    server.on('error', () => {})
    return server
  })
  return { port: address.port, accepted }
}

/** A ws server on loopback with one raw client; returns the server's socket for it. */
export async function pair (t: Tap): Promise<{ server: WebSocket, client: RawClient }> {
  const { port, accepted } = await loopbackServer(t)
  const address = { port }
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
  return { server: await accepted, client }
}
