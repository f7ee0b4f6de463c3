/**
 * Query parameters that may carry a credential. Browsers cannot set headers
 * on a WebSocket, so tokens often ride in the URL, and Fastify logs the URL
 * of every request before any hook runs.
 */
export const SECRET_QUERY_PARAMS = ['token', 'access_token', 'accessToken', 'jwt', 'auth', 'authorization', 'api_key', 'apikey', 'key', 'password', 'secret']

const pattern = new RegExp(`([?&](?:${SECRET_QUERY_PARAMS.join('|')})=)[^&#]*`, 'gi')

/** The URL with the values of credential-like query parameters replaced. */
export function redactUrl (url: string): string {
  return url.includes('?') ? url.replace(pattern, '$1[redacted]') : url
}

interface RequestLike {
  method: string
  url: string
  host?: string
  ip?: string
  socket?: { remotePort?: number } | null
}

/**
 * A drop-in for Fastify's `req` log serializer that redacts tokens from the
 * URL: `Fastify({ logger: { serializers: { req: redactedRequestSerializer } } })`.
 */
export function redactedRequestSerializer (request: RequestLike): Record<string, unknown> {
  return {
    method: request.method,
    url: redactUrl(request.url),
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort
  }
}
