import { WebSocket, type WebSocketServer } from 'ws'
import type { ConnectionManager } from './connection-manager.js'
import { CloseCodes } from '../protocol/frames.js'

/**
 * Sends 1001 to every client and waits for their close frames, but never
 * longer than `closeTimeoutMs`: a client that does not answer is terminated
 * so `fastify.close()` cannot hang.
 */
export async function closeAllSockets (server: WebSocketServer, connections: ConnectionManager, closeTimeoutMs: number): Promise<void> {
  const pending: Array<Promise<void>> = []
  for (const socket of server.clients) {
    if (socket.readyState !== WebSocket.CLOSED) pending.push(new Promise((resolve) => socket.once('close', () => resolve())))
  }
  for (const connection of [...connections.all()]) connections.close(connection, CloseCodes.goingAway, 'server shutting down')
  // Sockets upgraded but not yet registered (a hook still running).
  for (const socket of server.clients) {
    if (socket.readyState === WebSocket.OPEN) socket.close(CloseCodes.goingAway, 'server shutting down')
  }
  if (pending.length > 0) {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, closeTimeoutMs) })
    await Promise.race([Promise.all(pending), timeout])
    clearTimeout(timer)
    for (const socket of server.clients) socket.terminate()
  }
  await new Promise<void>((resolve) => server.close(() => resolve()))
}
