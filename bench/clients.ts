import { WebSocket, type RawData } from 'ws'
import { field } from './control.js'
import { SOCKETIO_EVENT } from './payload.js'
import type { ClientProtocol } from './systems/system.js'

/*
 * The load driver's clients: raw `ws` clients for every system, so the client
 * side costs the same everywhere. Each protocol only decides when a client is
 * ready and which frames are measured broadcasts:
 *
 * - plain (ws, @fastify/websocket): ready on open; every frame is `{"seq":…}`.
 * - hub: ready on its `welcome` frame; only `server-broadcast` frames count.
 * - socketio: Engine.IO v4 over a raw WebSocket. `0{…}` (open) is answered
 *   with `40` (connect the default namespace), `40{"sid":…}` means ready,
 *   pings `2` are answered with `3`, and `42["bench",payload]` are the
 *   measured messages.
 */

export interface BenchClient {
  socket: WebSocket
  /** Measured broadcasts this client received. */
  received: number
}

export type OnSeq = (seq: number) => void

export function openClient (protocol: ClientProtocol, url: string, onSeq: OnSeq, timeoutMs: number): Promise<BenchClient> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: timeoutMs })
    const client: BenchClient = { socket, received: 0 }
    let settled = false
    const timer = setTimeout(() => fail(new Error(`client not ready within ${timeoutMs} ms`)), timeoutMs)
    function ready (): void {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve(client)
    }
    function fail (err: Error): void {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.terminate()
      reject(err)
    }
    function measured (seq: number | null): void {
      if (seq === null) return
      client.received++
      onSeq(seq)
    }
    socket.on('error', (err) => fail(err))
    socket.on('close', (code) => fail(new Error(`closed with ${code} before ready`)))
    switch (protocol) {
      case 'plain':
        socket.on('open', ready)
        socket.on('message', (data) => measured(seqOf(JSON.parse(text(data)))))
        break
      case 'hub':
        socket.on('message', (data) => {
          const frame: unknown = JSON.parse(text(data))
          const type = field(frame, 'type')
          if (type === 'server-broadcast') measured(seqOf(field(frame, 'message')))
          else if (type === 'batch') {
            // Clients that opted in to batching get the window's frames in one.
            const inner = field(frame, 'messages')
            if (Array.isArray(inner)) {
              for (const message of inner) {
                if (field(message, 'type') === 'server-broadcast') measured(seqOf(field(message, 'message')))
              }
            }
          } else if (type === 'welcome') ready()
        })
        break
      case 'socketio':
        socket.on('message', (data) => {
          const packet = text(data)
          if (packet.startsWith('42')) {
            const event: unknown = JSON.parse(packet.slice(2))
            if (Array.isArray(event) && event[0] === SOCKETIO_EVENT) measured(seqOf(event[1]))
          } else if (packet === '2') {
            socket.send('3')
          } else if (packet.startsWith('40')) {
            ready()
          } else if (packet.startsWith('0')) {
            socket.send('40')
          } else if (packet.startsWith('44')) {
            fail(new Error(`socket.io connect error: ${packet}`))
          }
        })
        break
    }
  })
}

/**
 * Opens `count` clients with at most `concurrency` handshakes in flight.
 * Rejects at the first client that fails; the others are terminated.
 */
export async function openClients (count: number, concurrency: number, open: () => Promise<BenchClient>): Promise<BenchClient[]> {
  const clients: BenchClient[] = []
  let started = 0
  let failure: unknown = null
  async function worker (): Promise<void> {
    while (started < count && failure === null) {
      started++
      try {
        clients.push(await open())
      } catch (err) {
        failure ??= err
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, () => worker()))
  if (failure !== null) {
    for (const client of clients) client.socket.terminate()
    throw failure instanceof Error ? failure : new Error(String(failure))
  }
  return clients
}

/** Closes every client and waits for their close events, at most `timeoutMs`. */
export async function closeClients (clients: BenchClient[], timeoutMs: number): Promise<void> {
  const closed = clients.map((client) => new Promise<void>((resolve) => {
    if (client.socket.readyState === WebSocket.CLOSED) resolve()
    else client.socket.once('close', () => resolve())
  }))
  for (const client of clients) client.socket.close()
  let timer: NodeJS.Timeout | undefined
  await Promise.race([Promise.all(closed), new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
  clearTimeout(timer)
  for (const client of clients) client.socket.terminate()
}

function text (data: RawData): string {
  return Buffer.isBuffer(data) ? data.toString() : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString()
}

function seqOf (payload: unknown): number | null {
  const seq = field(payload, 'seq')
  return typeof seq === 'number' ? seq : null
}
