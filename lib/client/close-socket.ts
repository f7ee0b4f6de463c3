import type { WebSocketLike } from './types.js'

const CLOSED = 3
/** How long `close()` waits for the closing handshake before it stops waiting. */
const CLOSE_WAIT_MS = 2_000

/**
 * Closes a socket and resolves when it has closed, or after CLOSE_WAIT_MS,
 * when a `ws` socket is terminated (a browser's gives up on its own).
 */
export async function closeSocket (socket: WebSocketLike, code: number, reason: string): Promise<void> {
  if (socket.readyState === CLOSED) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      socket.terminate?.()
      resolve()
    }, CLOSE_WAIT_MS)
    socket.addEventListener('close', () => {
      clearTimeout(timer)
      resolve()
    })
    try {
      socket.close(code, reason)
    } catch {
      // A code the platform refuses (only 1000 and 3000-4999 may be sent).
      socket.close()
    }
  })
}

/**
 * Gives a socket up without a closing handshake: `ws` sockets are
 * terminated, browser sockets closed in the background (they have no
 * terminate); its late events are the caller's to ignore.
 */
export function abandonSocket (socket: WebSocketLike): void {
  try {
    if (socket.terminate !== undefined) socket.terminate()
    else socket.close()
  } catch {
    // Already closing: nothing more to do.
  }
}
