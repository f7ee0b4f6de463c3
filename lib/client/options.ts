import type { BackoffOptions } from './backoff.js'
import type { WebSocketConstructor } from './types.js'

export interface HubClientOptions {
  /** Subprotocols offered; the hub selects one. Default `['ws-hub.v1']`. */
  protocols?: string[]
  /**
   * Sent as a `bearer.<token>` subprotocol entry after `protocols` (browsers
   * cannot set headers on a WebSocket). A function is called before every
   * attempt, so a reconnect can carry a fresh token. The token must be made
   * of HTTP token characters (a JWT is).
   */
  token?: string | (() => string | Promise<string>)
  /** Backoff between reconnect attempts, or `false` to never reconnect. */
  reconnect?: Partial<BackoffOptions> | false
  /**
   * Close codes after which the client gives up instead of reconnecting.
   * Default `[1008, 4000]`: a policy close (session expired, message flood)
   * or a close by the server (`DELETE /api/connections/:id`) is meant to
   * stick. Pass `[]` to reconnect after every close.
   */
  noReconnectCodes?: number[]
  /** Interval of app-level `{"type":"ping"}` while open; `0` disables. Default 20000. */
  pingIntervalMs?: number
  /** A ping unanswered this long means the server is gone: the socket is dropped (close code 1006) and reconnected. Default 10000. */
  pongTimeoutMs?: number
  /** How long a request waits for its `ack` before rejecting with `ack_timeout`. Default 10000. */
  ackTimeoutMs?: number
  /** How long an attempt may take from opening the socket to `welcome`. Default 10000. */
  openTimeoutMs?: number
  /** The WebSocket class to use. Default: `globalThis.WebSocket`, else the `ws` package. */
  WebSocket?: WebSocketConstructor
}

export const CLIENT_DEFAULTS = Object.freeze({
  protocols: Object.freeze(['ws-hub.v1']),
  noReconnectCodes: Object.freeze([1008, 4000]),
  pingIntervalMs: 20_000,
  pongTimeoutMs: 10_000,
  ackTimeoutMs: 10_000,
  openTimeoutMs: 10_000
})

let wsModule: Promise<WebSocketConstructor> | undefined

/**
 * The WebSocket class: the platform's when there is one (browsers, Node 22),
 * else the `ws` package, imported only then so a browser never loads it.
 */
export async function platformWebSocket (): Promise<WebSocketConstructor> {
  const native = (globalThis as { WebSocket?: unknown }).WebSocket
  if (typeof native === 'function') return native as WebSocketConstructor
  wsModule ??= import(/* webpackIgnore: true */ 'ws').then((module) => module.WebSocket as unknown as WebSocketConstructor)
  return wsModule
}

/** A duration option with its default, checked. */
export function duration (value: number | undefined, fallback: number, name: string, min: number): number {
  const result = value ?? fallback
  if (!Number.isFinite(result) || result < min) throw new RangeError(`HubClient: ${name} must be a number >= ${min} (got ${String(value)})`)
  return result
}

/** The client's URLs, checked once: at least one, each ws:, wss:, http: or https:. */
export function checkUrls (url: string | readonly string[]): readonly string[] {
  const urls = typeof url === 'string' ? [url] : [...url]
  if (urls.length === 0) throw new TypeError('HubClient: at least one URL is needed')
  for (const each of urls) {
    let parsed: URL
    try {
      parsed = new URL(each)
    } catch (err) {
      throw new TypeError(`HubClient: invalid URL ${JSON.stringify(each)}`, { cause: err })
    }
    if (!['ws:', 'wss:', 'http:', 'https:'].includes(parsed.protocol)) {
      throw new TypeError(`HubClient: the URL must be ws:, wss:, http: or https: (got ${parsed.protocol})`)
    }
  }
  return Object.freeze(urls)
}
