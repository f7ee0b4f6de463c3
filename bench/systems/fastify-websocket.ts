import Fastify from 'fastify'
import websocket from '@fastify/websocket'
import type { SystemUnderTest } from './system.js'

/** Stock @fastify/websocket with the hand-written broadcast loop from the issue. */
export async function startFastifyWebsocket (): Promise<SystemUnderTest> {
  const app = Fastify({ logger: false })
  await app.register(websocket, { options: { perMessageDeflate: false } })
  app.get('/ws', { websocket: true }, (socket) => {
    socket.on('error', () => {})
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('fastify-websocket: no port')
  return {
    url: `ws://127.0.0.1:${address.port}/ws`,
    count: () => app.websocketServer.clients.size,
    broadcast: (msg) => {
      for (const c of app.websocketServer.clients) c.send(JSON.stringify(msg))
    },
    close: async () => {
      for (const c of app.websocketServer.clients) c.terminate()
      await app.close()
    }
  }
}
