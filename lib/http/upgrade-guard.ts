import type { FastifyInstance, RouteOptions } from 'fastify'

/** Marks a route's config with what it answers; a symbol, so no app config key can clash. */
const ROUTE_KIND = Symbol('fastify-ws-hub.routeKind')

/**
 * Refuses a WebSocket upgrade on every route that is not a WebSocket route,
 * before the upgrade.
 *
 * Why: @fastify/websocket routes every upgrade request through the router,
 * and a plain route (`/api/health`, an app's `/`) answers it with 101 and
 * then closes the socket (1005). The origin check, the handshake rate and
 * the per-IP limit are hooks of the hub's own route, so such a socket
 * skipped them all.
 *
 * How: an `onRoute` hook marks every route registered from here on as
 * WebSocket or not, by the test @fastify/websocket itself applies
 * (`websocket: true` or a `wsHandler`); an `onRequest` hook at the root,
 * which runs before any route's hooks, refuses upgrades on the others.
 * Routes registered before the hub carry no mark and are left alone: when
 * the hub registered @fastify/websocket they came before it and never
 * upgrade; when the app registered it, they may be the app's own
 * WebSocket routes. Register the hub before your routes to guard them.
 */
export function guardUpgrades (fastify: FastifyInstance): void {
  fastify.addHook('onRoute', (route) => {
    // A new object: the caller's config may be shared between routes.
    const mark = { [ROUTE_KIND]: isWebSocketRoute(route) ? 'websocket' : 'http' }
    route.config = { ...route.config, ...mark }
  })
  fastify.addHook('onRequest', async (request, reply) => {
    // `ws` is set by @fastify/websocket's own onRequest hook, added before this one.
    if (!request.ws) return
    const config = request.routeOptions.config as { [ROUTE_KIND]?: unknown }
    if (config[ROUTE_KIND] !== 'http') return
    await reply.code(400).send({
      statusCode: 400,
      error: 'Bad Request',
      code: 'not_a_websocket_route',
      message: 'this route does not accept WebSocket connections'
    })
  })
}

function isWebSocketRoute (route: RouteOptions): boolean {
  return route.websocket === true || typeof route.wsHandler === 'function'
}
