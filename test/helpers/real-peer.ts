import { once } from 'node:events'
import { WebSocket } from 'ws'
import { loopbackServer, type Tap } from './raw-client.js'

/** The client end of a server socket the manager writes to. */
export interface Peer {
  socket: WebSocket
  /** The next `count` text messages the client received. */
  messages: (count: number) => Promise<string[]>
  /** Makes the client stop reading, so unsent bytes pile up on the server. */
  stall: () => void
  /** Resumes reading and resolves with the close code the client gets. */
  closeCode: () => Promise<number>
  /** Simulates a socket that died under the manager. */
  kill: () => Promise<void>
  /** Sets the backlog directly, where the socket is a fake; null otherwise. */
  fakeBacklog: ((bytes: number) => void) | null
}

/** A real ws server socket on loopback, with a real ws client reading it. */
export async function realPeer (t: Tap): Promise<Peer> {
  const { port, accepted } = await loopbackServer(t)
  const client = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false })
  t.teardown(() => client.terminate())
  const received: string[] = []
  let wake: () => void = () => {}
  client.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) received.push(data.toString())
    wake()
  })
  const closed = new Promise<number>((resolve) => client.once('close', (code: number) => resolve(code)))
  const server = await accepted
  await once(client, 'open')
  return {
    socket: server,
    messages: async (count) => {
      while (received.length < count) await new Promise<void>((resolve) => { wake = resolve })
      return received.splice(0, count)
    },
    stall: () => client.pause(),
    closeCode: async () => {
      client.resume()
      return await closed
    },
    kill: async () => {
      server.terminate()
      await once(server, 'close')
    },
    fakeBacklog: null
  }
}
