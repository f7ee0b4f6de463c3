import { platformWebSocket, type HubClientOptions } from './options.js'
import type { WebSocketConstructor, WebSocketLike } from './types.js'

export interface SocketRecipe {
  url: string
  protocols: readonly string[]
  token: HubClientOptions['token']
  WebSocket: WebSocketConstructor | undefined
}

/**
 * A new socket to `url`. The token travels as a `bearer.<token>` protocol
 * entry: browsers cannot set headers on a WebSocket, and the hub never
 * echoes that entry back. `stale()` is asked after the awaits: a close or a
 * newer attempt meanwhile means no socket is made (null).
 */
export async function openSocket (recipe: SocketRecipe, stale: () => boolean): Promise<WebSocketLike | null> {
  const protocols = [...recipe.protocols]
  const token = typeof recipe.token === 'function' ? await recipe.token() : recipe.token
  if (token !== undefined) protocols.push(`bearer.${token}`)
  const WebSocketClass = recipe.WebSocket ?? await platformWebSocket()
  if (stale()) return null
  return new WebSocketClass(recipe.url, protocols)
}
