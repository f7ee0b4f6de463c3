import type { BenchPayload } from '../payload.js'

/** A server under test, as the bench's server process drives it. */
export interface SystemUnderTest {
  /** The ws:// URL clients connect to. */
  url: string
  /** Connections the server holds that a broadcast would reach. */
  count: () => number
  /** One broadcast of `payload` to every client, written before it returns. */
  broadcast: (payload: BenchPayload) => void
  /** Counters worth keeping with the results, if the system has any. */
  stats?: () => unknown
  close: () => Promise<void>
}

export interface SystemOptions {
  /** Clients the driver will open; limits are raised above it. */
  maxClients: number
  /**
   * Hub only: a JSON `broker` / `registry` option passed through unchanged.
   * EXTENSION POINT for cross-instance runs (see bench/cross-instance.ts).
   */
  hubBroker?: unknown
  hubRegistry?: unknown
}

/** What the driver's clients speak, so every system costs the client the same. */
export type ClientProtocol = 'hub' | 'plain' | 'socketio'

/** What `npm run bench` runs unless `--systems` says otherwise. */
export const SYSTEM_NAMES = ['hub', 'hub-send', 'hub-batch', 'fastify-websocket', 'ws', 'socketio'] as const
/**
 * Run only when asked for: the hub with each `preparedFrames` value, and the
 * socket writers alone over a bare ws server (see bench/README.md).
 */
export const WRITER_SYSTEM_NAMES = ['hub-prepared', 'writer-send', 'writer-send-coalesced', 'writer-prepared'] as const
export const ALL_SYSTEM_NAMES = [...SYSTEM_NAMES, ...WRITER_SYSTEM_NAMES] as const
export type SystemName = typeof ALL_SYSTEM_NAMES[number]

export interface SystemInfo {
  label: string
  protocol: ClientProtocol
  description: string
}

export const SYSTEMS: Record<SystemName, SystemInfo> = {
  hub: { label: 'hub', protocol: 'hub', description: 'fastify-ws-hub from dist/, memory backends, heartbeat off, wsHub.broadcast(), default options' },
  'hub-send': { label: 'hub (send)', protocol: 'hub', description: 'the same hub with preparedFrames: false: one socket.send per recipient' },
  'hub-prepared': { label: 'hub (prepared)', protocol: 'hub', description: 'the same hub with preparedFrames: true: each frame built once for all recipients' },
  'writer-send': { label: 'writer: send', protocol: 'plain', description: 'bare ws server, one Buffer per broadcast, SendWriter without coalescing (socket.send per recipient)' },
  'writer-send-coalesced': { label: 'writer: send+cork', protocol: 'plain', description: 'the same with SendWriter coalescing each socket\'s writes of a tick (cork/uncork)' },
  'writer-prepared': { label: 'writer: prepared', protocol: 'plain', description: 'the same with PreparedFrameWriter (frame built once, coalescing)' },
  'hub-batch': { label: 'hub (batch)', protocol: 'hub', description: 'the same hub, every client opted in to batching (?batch=1, default 25 ms / 100 messages)' },
  'fastify-websocket': { label: '@fastify/websocket', protocol: 'plain', description: 'stock @fastify/websocket, for (const c of app.websocketServer.clients) c.send(JSON.stringify(msg))' },
  ws: { label: 'ws', protocol: 'plain', description: 'bare ws WebSocketServer, the same loop' },
  socketio: { label: 'socket.io', protocol: 'socketio', description: 'Socket.IO 4, websocket transport only, io.emit()' }
}

/** The system every ratio is relative to. */
export const BASELINE: SystemName = 'fastify-websocket'

export function isSystemName (value: string): value is SystemName {
  return (ALL_SYSTEM_NAMES as readonly string[]).includes(value)
}

export async function startSystem (name: SystemName, options: SystemOptions): Promise<SystemUnderTest> {
  switch (name) {
    case 'hub':
    case 'hub-batch':
      return (await import('./hub.js')).startHub({ ...options, batch: name === 'hub-batch' })
    case 'hub-send':
    case 'hub-prepared':
      return (await import('./hub.js')).startHub({ ...options, prepared: name === 'hub-prepared' })
    case 'writer-send':
    case 'writer-send-coalesced':
      return (await import('./writer.js')).startWriterSystem({ preparedFrames: false, coalesce: name === 'writer-send-coalesced' })
    case 'writer-prepared':
      return (await import('./writer.js')).startWriterSystem({ preparedFrames: true })
    case 'fastify-websocket':
      return (await import('./fastify-websocket.js')).startFastifyWebsocket()
    case 'ws':
      return (await import('./ws.js')).startWs()
    case 'socketio':
      return (await import('./socketio.js')).startSocketIo()
  }
}
