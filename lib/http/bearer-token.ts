import type { FastifyRequest } from 'fastify'

/** Longer than any real JWT or opaque token; a header this size is an attack or a bug. */
export const MAX_BEARER_TOKEN_LENGTH = 4096

/** The subprotocol prefix `HubClient` (and the example page) send the token under. */
export const BEARER_PROTOCOL_PREFIX = 'bearer.'

/**
 * Query parameters read, in order: `access_token` is the name RFC 6750 (2.3)
 * gives it; `token` is what this repository's example and logs redaction use.
 */
export const BEARER_QUERY_PARAMS = ['access_token', 'token'] as const

/** Visible ASCII only: no spaces, controls or anything a header cannot carry. */
const TOKEN_CHARS = /^[\x21-\x7e]+$/
/** RFC 7235: the scheme is case-insensitive, followed by one or more spaces. */
const BEARER_SCHEME = /^bearer +/i

export type BearerRequest = Pick<FastifyRequest, 'headers' | 'query'>

/**
 * The bearer token a client sent, or null. Read from, in order:
 *
 * 1. `Authorization: Bearer <token>`;
 * 2. a `Sec-WebSocket-Protocol` entry `bearer.<token>` (browsers cannot set
 *    headers on a WebSocket, so `HubClient` sends it this way);
 * 3. the `access_token` query parameter, then `token`.
 *
 * The first place that carries a token decides: a malformed one there gives
 * null rather than a token found further down, so a client never ends up
 * authenticated by a credential it did not mean to use. A token is trimmed
 * and must be 1 to 4096 visible ASCII characters.
 */
export function bearerToken (request: BearerRequest): string | null {
  const places = [
    () => fromAuthorization(request.headers.authorization),
    () => fromProtocols(request.headers['sec-websocket-protocol']),
    () => fromQuery(request.query)
  ]
  for (const read of places) {
    const found = read()
    if (found !== undefined) return found
  }
  return null
}

/** undefined: this place carries no token; null: it carries a malformed one. */
type Found = string | null | undefined

function fromAuthorization (header: string | undefined): Found {
  if (header === undefined) return undefined
  const value = header.trim()
  const scheme = BEARER_SCHEME.exec(value)
  // Another scheme (Basic, an API key) is not a bearer token: look further.
  if (scheme === null) return /^bearer$/i.test(value) ? null : undefined
  return checked(value.slice(scheme[0].length))
}

/** Node joins a repeated `Sec-WebSocket-Protocol` header with commas, so one string holds every entry. */
function fromProtocols (header: string | undefined): Found {
  if (header === undefined) return undefined
  const entries = header.split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith(BEARER_PROTOCOL_PREFIX))
  if (entries.length === 0) return undefined
  // Two tokens: no way to tell which one the client meant.
  if (entries.length > 1) return null
  return checked((entries[0] as string).slice(BEARER_PROTOCOL_PREFIX.length))
}

function fromQuery (query: unknown): Found {
  if (query === null || typeof query !== 'object') return undefined
  for (const name of BEARER_QUERY_PARAMS) {
    if (!Object.hasOwn(query, name)) continue
    const value: unknown = (query as Record<string, unknown>)[name]
    // `?token=a&token=b` parses to an array: ambiguous, so refused.
    return typeof value === 'string' ? checked(value) : null
  }
  return undefined
}

function checked (raw: string): string | null {
  const token = raw.trim()
  if (token.length === 0 || token.length > MAX_BEARER_TOKEN_LENGTH) return null
  return TOKEN_CHARS.test(token) ? token : null
}
