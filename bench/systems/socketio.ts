import { createServer } from 'node:http'
import { once } from 'node:events'
import { Server } from 'socket.io'
import { SOCKETIO_EVENT } from '../payload.js'
import type { SystemUnderTest } from './system.js'

/**
 * Socket.IO 4 with the websocket transport only and the same settings as the
 * others: no permessage-deflate, no HTTP compression. Its heartbeat is pushed
 * out of the run (the hub's is off too); the driver still answers pings.
 */
export async function startSocketIo (): Promise<SystemUnderTest> {
  const http = createServer()
  const io = new Server(http, {
    transports: ['websocket'],
    perMessageDeflate: false,
    httpCompression: false,
    serveClient: false,
    pingInterval: 10 * 60_000,
    pingTimeout: 60_000
  })
  http.listen(0, '127.0.0.1')
  await once(http, 'listening')
  const address = http.address()
  if (address === null || typeof address === 'string') throw new Error('socket.io: no port')
  const namespace = io.of('/')
  return {
    url: `ws://127.0.0.1:${address.port}/socket.io/?EIO=4&transport=websocket`,
    count: () => namespace.sockets.size,
    broadcast: (msg) => { io.emit(SOCKETIO_EVENT, msg) },
    close: async () => {
      io.disconnectSockets(true)
      await io.close()
    }
  }
}
