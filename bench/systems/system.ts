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

export const SYSTEM_NAMES = ['hub', 'hub-send', 'hub-batch', 'fastify-websocket', 'ws', 'socketio'] as const
export type SystemName = typeof SYSTEM_NAMES[number]

export interface SystemInfo {
  label: string
  protocol: ClientProtocol
  description: string
}

export const SYSTEMS: Record<SystemName, SystemInfo> = {
  hub: { label: 'hub', protocol: 'hub', description: 'fastify-ws-hub from dist/, memory backends, heartbeat off, messageDispatcher.broadcast(), default options (prepared frames)' },
  'hub-send': { label: 'hub (send)', protocol: 'hub', description: 'the same hub with preparedFrames: false: one socket.send per recipient' },
  'hub-batch': { label: 'hub (batch)', protocol: 'hub', description: 'the same hub, every client opted in to batching (?batch=1, default 25 ms / 100 messages)' },
  'fastify-websocket': { label: '@fastify/websocket', protocol: 'plain', description: 'stock @fastify/websocket, for (const c of app.websocketServer.clients) c.send(JSON.stringify(msg))' },
  ws: { label: 'ws', protocol: 'plain', description: 'bare ws WebSocketServer, the same loop' },
  socketio: { label: 'socket.io', protocol: 'socketio', description: 'Socket.IO 4, websocket transport only, io.emit()' }
}

/** The system every ratio is relative to. */
export const BASELINE: SystemName = 'fastify-websocket'

export function isSystemName (value: string): value is SystemName {
  return (SYSTEM_NAMES as readonly string[]).includes(value)
}

export async function startSystem (name: SystemName, options: SystemOptions): Promise<SystemUnderTest> {
  switch (name) {
    case 'hub':
    case 'hub-send':
    case 'hub-batch':
      return (await import('./hub.js')).startHub({ ...options, prepared: name !== 'hub-send', batch: name === 'hub-batch' })
    case 'fastify-websocket':
      return (await import('./fastify-websocket.js')).startFastifyWebsocket()
    case 'ws':
      return (await import('./ws.js')).startWs()
    case 'socketio':
      return (await import('./socketio.js')).startSocketIo()
  }
}
