import type { FastifyReply, FastifyRequest } from 'fastify'

/**
 * Client and user ids may be `MAX_ID_LENGTH` (128) characters, but the
 * router answers 414 for a path parameter longer than the server's
 * `maxParamLength` (Fastify's default is 100), before any hook or schema,
 * and Fastify 5 has no per-route or per-plugin setting for it. So each
 * route on an id also gets a hidden twin on a wildcard, which the router
 * tries only when the parametric route did not match. The twin takes the id
 * from the path as the parametric route would (one segment, then the
 * route's suffix), then runs the same schema and handler: an id up to 128
 * characters is served, and a longer one is refused by the schema with a
 * 400, as every other invalid id is.
 */
export interface LongIdRoute {
  /** Where the wildcard stands in, for example `/connections/:id/send`. */
  url: string
  /** @fastify/swagger leaves the twin out: the parametric route documents both. */
  schema: { hide?: true }
  preValidation?: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
}

/**
 * The parametric route `<base>/:<param><suffix>` and its twin `<base>/*`,
 * each passed to `register`.
 */
export function withLongIds (base: string, param: string, suffix: '' | '/send', register: (route: LongIdRoute) => void): void {
  register({ url: `${base}/:${param}${suffix}`, schema: {} })
  register({
    url: `${base}/*`,
    schema: { hide: true },
    preValidation: async function longId (request, reply) {
      const id = idFromPath(request, suffix)
      if (id === null) {
        reply.callNotFound()
        return
      }
      request.params = { [param]: id }
    }
  })
}

/**
 * The id from the raw path, so a `%2F` inside an id and a `/` between
 * segments stay apart (the router's wildcard value is decoded whole); null
 * when the path is not `<one segment><suffix>`.
 */
function idFromPath (request: FastifyRequest, suffix: string): string | null {
  const routeUrl = request.routeOptions.url ?? ''
  const prefix = routeUrl.slice(0, -1)
  const path = request.url.split('?', 1)[0] ?? ''
  if (!path.startsWith(prefix) || !path.endsWith(suffix)) return null
  const segment = path.slice(prefix.length, path.length - suffix.length)
  if (segment.includes('/')) return null
  try {
    return decodeURIComponent(segment)
  } catch {
    return null
  }
}
