import { createRequire } from 'node:module'
import { Duplex } from 'node:stream'
import { WebSocket } from 'ws'
import type { SocketWriter } from './socket-writer.js'
import { isCorkable, TickCork, type CorkableStream } from './tick-cork.js'

/*
 * Prepared text frames: a broadcast builds its WebSocket frame (header and
 * payload, one buffer) once and writes that same buffer to every recipient,
 * instead of `socket.send(data)` building a header per socket.
 *
 * This leans on ws internals (ws 8.x, checked against 8.23). All of them are
 * verified once, at the first use, by `probePreparedFrames()`, which drives a
 * real ws `WebSocket` over an in-memory stream through both paths and compares
 * the bytes and `bufferedAmount`. If anything differs the writer falls back to
 * the public `socket.send`, and test/prepared-frame.test.ts fails loudly.
 *
 * - `Sender.frame(data, options)`, static and documented `@public` in
 *   ws/lib/sender.js, returns `[header, data]` for an unmasked frame.
 * - `websocket._sender` (private): the socket's `Sender`. Its
 *   `sendFrame(list, cb?)` writes the buffers to the stream. Socket.IO
 *   (engine.io, transports/websocket.ts) relies on the same two calls, as the
 *   ws author suggested in websockets/ws#617.
 * - `_sender._state === 0`, `_sender._queue.length === 0` and
 *   `_sender._firstFragment === true` (private): nothing is queued behind a
 *   compression or a Blob read and no fragmented message is open, so a frame
 *   written now keeps its place and its framing. Otherwise: `socket.send`.
 * - `_sender._extensions` (private) is empty: no permessage-deflate.
 * - `websocket._socket` (private): the net.Socket `sendFrame` writes to, for
 *   the public stream calls `cork()`, `uncork()`, `writable` and `writableLength`.
 * - `bufferedAmount` is `_socket._writableState.length + _sender._bufferedBytes`
 *   (ws/lib/websocket.js), so bytes written this way count toward
 *   slow-consumer detection exactly as `send()`'s do; the probe checks it.
 *
 * Of the gain, the frame built once saves the header work per recipient;
 * the per-tick coalescing (lib/connections/tick-cork.ts), which `SendWriter`
 * has too, saves the syscalls. See the README's benchmark section.
 */

type FrameList = Buffer[]

interface SenderInternals {
  _state: number
  _queue: unknown[]
  _firstFragment: boolean
  sendFrame: (list: FrameList) => void
}

interface Internals {
  sender: SenderInternals
  stream: CorkableStream
}

/** `{ ok: true }` when every internal listed above is as expected. */
export interface ProbeResult {
  ok: boolean
  /** Why the prepared path is off; empty when `ok`. */
  reason: string
}

export interface PreparedFrameWriterOptions {
  /** `false` always uses `socket.send`. Default `true`; ignored when the probe fails. */
  enabled?: boolean
  /**
   * Cork a socket at its first frame in a tick and uncork it on
   * `process.nextTick`, so several frames written to it in one tick leave in
   * one `writev`. Default `true`.
   */
  coalesce?: boolean
}

export interface PreparedFrameCounters {
  /** Frames written through the prepared path. */
  prepared: number
  /** Frames handed to `socket.send` (not OPEN, busy sender, not a ws socket, disabled). */
  fallback: number
  /** Frames built; with a broadcast, one per message, not per recipient. */
  built: number
}

const OPCODE_TEXT = 1
const SENDER_IDLE = 0

const frameFunction = loadFrameFunction()

/**
 * Writes text frames exactly as `socket.send(data, { binary: false })` would,
 * building each frame once for all the recipients of the same `data` buffer.
 */
export class PreparedFrameWriter implements SocketWriter {
  readonly enabled: boolean
  readonly coalesce: boolean
  readonly counters: PreparedFrameCounters = { prepared: 0, fallback: 0, built: 0 }
  readonly #internals = new WeakMap<object, Internals | null>()
  readonly #cork: TickCork | null
  #lastData: Buffer | null = null
  #lastFrame: Buffer = Buffer.alloc(0)

  constructor (options: PreparedFrameWriterOptions = {}) {
    this.enabled = (options.enabled ?? true) && probePreparedFrames().ok
    this.coalesce = options.coalesce ?? true
    this.#cork = this.coalesce ? new TickCork() : null
  }

  write (socket: WebSocket, data: Buffer): void {
    const internals = this.enabled && socket.readyState === WebSocket.OPEN ? this.#internalsOf(socket) : null
    if (internals === null || !ready(internals)) {
      this.counters.fallback++
      this.#send(socket, data, internals)
      return
    }
    if (data !== this.#lastData) {
      this.#lastFrame = textFrame(data)
      this.#lastData = data
      this.counters.built++
    }
    if (this.#cork !== null) {
      this.#cork.hold(socket, internals.stream)
      this.#cork.count(socket, this.#lastFrame.length)
    }
    internals.sender.sendFrame([this.#lastFrame])
    this.counters.prepared++
  }

  unsentBytes (socket: WebSocket): number {
    const buffered = socket.bufferedAmount
    return buffered === 0 || this.#cork === null ? buffered : buffered - this.#cork.heldBytes(socket)
  }

  /** Uncorks now what would be uncorked at the end of the tick. */
  flush (): void {
    this.#cork?.release()
  }

  #send (socket: WebSocket, data: Buffer, internals: Internals | null): void {
    // A socket corked earlier this tick keeps what send() writes corked too:
    // counted, so unsentBytes does not charge it to the client.
    if (internals === null || this.#cork === null || !this.#cork.isHeld(socket)) {
      socket.send(data, { binary: false })
      return
    }
    const before = internals.stream.writableLength
    socket.send(data, { binary: false })
    this.#cork.count(socket, internals.stream.writableLength - before)
  }

  #internalsOf (socket: WebSocket): Internals | null {
    let internals = this.#internals.get(socket)
    if (internals === undefined) {
      internals = internalsOf(socket)
      this.#internals.set(socket, internals)
    }
    return internals
  }
}

/** Whether a frame may be written through the sender now, keeping its place and framing. */
function ready (internals: Internals): boolean {
  const sender = internals.sender
  return sender._state === SENDER_IDLE && sender._queue.length === 0 && sender._firstFragment && internals.stream.writable
}

/** One unmasked, final text frame (header and payload in one buffer), built by ws. */
export function textFrame (data: Buffer): Buffer {
  if (frameFunction === null) throw new Error('fastify-ws-hub: ws does not export Sender.frame')
  const list = frameFunction(data)
  return list.length === 1 && list[0] !== undefined ? list[0] : Buffer.concat(list)
}

let probed: ProbeResult | undefined

/** Checks, once per process, every ws internal the prepared path relies on. */
export function probePreparedFrames (): ProbeResult {
  probed ??= runProbe()
  return probed
}

function runProbe (): ProbeResult {
  try {
    if (frameFunction === null) return fail('ws does not export Sender.frame')
    const payload = Buffer.from('{"probe":"€"}')
    const expected = Buffer.concat([Buffer.from([0x80 | OPCODE_TEXT, payload.length]), payload])
    if (!textFrame(payload).equals(expected)) return fail('Sender.frame built an unexpected frame')

    const viaSend = probeSocket()
    viaSend.socket.send(payload, { binary: false })
    const viaPrepared = probeSocket()
    const internals = internalsOf(viaPrepared.socket)
    if (internals === null) return fail('_sender / _socket are not as expected')
    if (internals.sender._state !== SENDER_IDLE || internals.sender._queue.length !== 0 || !internals.sender._firstFragment) {
      return fail('an idle Sender does not report _state 0, an empty _queue and _firstFragment')
    }
    internals.sender.sendFrame([textFrame(payload)])

    const sent = Buffer.concat(viaSend.written)
    const prepared = Buffer.concat(viaPrepared.written)
    const result = !sent.equals(expected)
      ? fail('socket.send wrote an unexpected frame')
      : !prepared.equals(sent)
          ? fail('sendFrame wrote different bytes than socket.send')
          : viaSend.socket.bufferedAmount !== sent.length || viaPrepared.socket.bufferedAmount !== prepared.length
            ? fail(`bufferedAmount does not count written bytes (send ${viaSend.socket.bufferedAmount}, prepared ${viaPrepared.socket.bufferedAmount}, expected ${sent.length})`)
            : { ok: true, reason: '' }
    viaSend.stream.destroy()
    viaPrepared.stream.destroy()
    return result
  } catch (err) {
    return fail(`probe threw: ${err instanceof Error ? err.message : String(err)}`)
  }
}

function fail (reason: string): ProbeResult {
  return { ok: false, reason: `prepared frames disabled: ${reason}` }
}

/**
 * A server-side ws WebSocket over an in-memory stream whose writes never
 * complete, so every written byte stays counted in `bufferedAmount`.
 */
function probeSocket (): { socket: WebSocket, stream: Duplex, written: Buffer[] } {
  const written: Buffer[] = []
  const stream = new Duplex({
    read () {},
    write (chunk: Buffer) { written.push(chunk) },
    writev (chunks: Array<{ chunk: Buffer }>) { for (const { chunk } of chunks) written.push(chunk) }
  })
  // What WebSocketServer does for an upgrade: `new WebSocket(null, undefined, serverOptions)`.
  const socket: unknown = Reflect.construct(WebSocket, [null, undefined, { autoPong: true }])
  if (!(socket instanceof WebSocket)) throw new Error('could not construct a server-side WebSocket')
  const setSocket: unknown = Reflect.get(socket, 'setSocket')
  if (typeof setSocket !== 'function') throw new Error('WebSocket#setSocket is missing')
  Reflect.apply(setSocket, socket, [stream, Buffer.alloc(0), { maxPayload: 0, allowSynchronousEvents: true, skipUTF8Validation: false }])
  // The stream never errors, but a listener keeps a surprise from being fatal.
  socket.on('error', () => {})
  return { socket, stream, written }
}

function internalsOf (socket: object): Internals | null {
  const sender: unknown = Reflect.get(socket, '_sender')
  const stream: unknown = Reflect.get(socket, '_socket')
  if (!isSender(sender) || !isCorkable(stream)) return null
  // sendFrame must write to the very stream that is corked and checked.
  if (Reflect.get(sender, '_socket') !== stream) return null
  const extensions: unknown = Reflect.get(sender, '_extensions')
  if (typeof extensions !== 'object' || extensions === null || Object.keys(extensions).length !== 0) return null
  return { sender, stream }
}

function isSender (value: unknown): value is SenderInternals {
  return typeof value === 'object' && value !== null &&
    typeof Reflect.get(value, 'sendFrame') === 'function' &&
    typeof Reflect.get(value, '_state') === 'number' &&
    Array.isArray(Reflect.get(value, '_queue')) &&
    typeof Reflect.get(value, '_firstFragment') === 'boolean'
}

function isBufferList (value: unknown): value is FrameList {
  return Array.isArray(value) && value.every((part: unknown) => Buffer.isBuffer(part))
}

/** ws's `Sender.frame` bound to the options of a final, unmasked text frame, or null. */
function loadFrameFunction (): ((data: Buffer) => FrameList) | null {
  // `Sender` is exported by ws but not declared by @types/ws; the CommonJS
  // entry is the same module instance the ESM `import { WebSocket }` uses.
  const ws: unknown = createRequire(import.meta.url)('ws')
  const sender: unknown = typeof ws === 'function' ? Reflect.get(ws, 'Sender') : undefined
  const frame: unknown = typeof sender === 'function' ? Reflect.get(sender, 'frame') : undefined
  if (typeof frame !== 'function') return null
  const options = { fin: true, rsv1: false, opcode: OPCODE_TEXT, mask: false, readOnly: true }
  return (data) => {
    const list: unknown = Reflect.apply(frame, sender, [data, options])
    if (!isBufferList(list)) {
      throw new Error('fastify-ws-hub: ws Sender.frame returned something other than a list of buffers')
    }
    return list
  }
}
