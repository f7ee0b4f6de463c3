import { once } from 'node:events'
import { WebSocketServer } from 'ws'
import type { SystemUnderTest } from './system.js'

/** A bare ws server with the hand-written broadcast loop. */
export async function startWs (): Promise<SystemUnderTest> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  wss.on('connection', (socket) => { socket.on('error', () => {}) })
  await once(wss, 'listening')
  const address = wss.address()
  if (address === null || typeof address === 'string') throw new Error('ws: no port')
  return {
    url: `ws://127.0.0.1:${address.port}/`,
    count: () => wss.clients.size,
    broadcast: (msg) => {
      for (const c of wss.clients) c.send(JSON.stringify(msg))
    },
    close: () => new Promise<void>((resolve) => {
      for (const c of wss.clients) c.terminate()
      wss.close(() => resolve())
    })
  }
}
