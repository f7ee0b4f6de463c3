import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'

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
  /**
   * Set on the twin of a `/topics/:topic` route: a `DELETE <base>/*` twin
   * already exists for the id itself, and the router tells the two apart
   * by this constraint (see `longIdConstraint`).
   */
  constraints?: Record<string, string>
}

/** What follows the id: nothing, `/send`, or a topic. */
export type LongIdSuffix = '' | '/send' | '/topics/:topic'

const STRATEGY = 'wsHubLongIdSuffix'
type Strategy = Parameters<FastifyInstance['addConstraintStrategy']>[0]
type RouteHandler = Parameters<ReturnType<Strategy['storage']>['set']>[1]

/**
 * The parametric route `<base>/:<param><suffix>` and its twin `<base>/*`,
 * each passed to `register`. Call `longIdConstraint(app)` once before
 * registering a `/topics/:topic` suffix.
 */
export function withLongIds (base: string, param: string, suffix: LongIdSuffix, register: (route: LongIdRoute) => void): void {
  register({ url: `${base}/:${param}${suffix}`, schema: {} })
  const twin: LongIdRoute = {
    url: `${base}/*`,
    schema: { hide: true },
    preValidation: async function longId (request, reply) {
      const params = paramsFromPath(request, param, suffix)
      if (params === null) {
        reply.callNotFound()
        return
      }
      request.params = params
    }
  }
  if (suffix === '/topics/:topic') twin.constraints = { [STRATEGY]: 'topic' }
  register(twin)
}

/**
 * Lets two wildcard twins share a method and a base (`DELETE
 * /connections/*` closes a client; `DELETE /connections/<id>/topics/<t>`
 * unsubscribes it): a request whose path ends in `/topics/<one segment>`
 * is routed to the twin constrained to `topic`, any other to the plain one.
 * The router derives the value only for paths with constrained routes.
 */
export function longIdConstraint (app: FastifyInstance): void {
  if (app.hasConstraintStrategy(STRATEGY)) return
  app.addConstraintStrategy({
    name: STRATEGY,
    storage () {
      const handlers = new Map<unknown, RouteHandler>()
      return {
        get: (value: unknown) => handlers.get(value) ?? null,
        set: (value: unknown, handler: RouteHandler) => { handlers.set(value, handler) }
      }
    },
    deriveConstraint (request: { url?: string }) {
      const segments = (request.url ?? '').split('?', 1)[0]?.split('/') ?? []
      return segments.length >= 3 && segments[segments.length - 2] === 'topics' ? 'topic' : undefined
    },
    mustMatchWhenDerived: false
  })
}

/**
 * The id (and topic) from the raw path, so a `%2F` inside an id and a `/`
 * between segments stay apart (the router's wildcard value is decoded
 * whole); null when the path is not `<one segment><suffix>`.
 */
function paramsFromPath (request: FastifyRequest, param: string, suffix: LongIdSuffix): Record<string, string> | null {
  const routeUrl = request.routeOptions.url ?? ''
  const prefix = routeUrl.slice(0, -1)
  const path = request.url.split('?', 1)[0] ?? ''
  if (!path.startsWith(prefix)) return null
  const segments = path.slice(prefix.length).split('/')
  const expected = suffix === '' ? 1 : suffix === '/send' ? 2 : 3
  if (segments.length !== expected) return null
  if (suffix === '/send' && segments[1] !== 'send') return null
  if (suffix === '/topics/:topic' && segments[1] !== 'topics') return null
  try {
    const params = { [param]: decodeURIComponent(segments[0] ?? '') }
    if (suffix === '/topics/:topic') params.topic = decodeURIComponent(segments[2] ?? '')
    return params
  } catch {
    return null
  }
}
