import { once } from 'node:events'
import { WebSocketServer } from 'ws'
import { createSocketWriter, type SocketWriterOptions } from '../../lib/connections/create-socket-writer.js'
import type { SystemUnderTest } from './system.js'

/**
 * A bare ws server that broadcasts through one of the hub's socket writers
 * (lib/connections/socket-writer.ts), serializing once per broadcast as the
 * hub does. Only the writer differs between these systems, so their rows
 * compare the writers themselves, without the hub around them.
 */
export async function startWriterSystem (options: SocketWriterOptions): Promise<SystemUnderTest> {
  const writer = createSocketWriter(options)
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  wss.on('connection', (socket) => { socket.on('error', () => {}) })
  await once(wss, 'listening')
  const address = wss.address()
  if (address === null || typeof address === 'string') throw new Error('writer: no port')
  return {
    url: `ws://127.0.0.1:${address.port}/`,
    count: () => wss.clients.size,
    broadcast: (msg) => {
      const data = Buffer.from(JSON.stringify(msg))
      for (const c of wss.clients) writer.write(c, data)
    },
    close: () => new Promise<void>((resolve) => {
      for (const c of wss.clients) c.terminate()
      wss.close(() => resolve())
    })
  }
}
