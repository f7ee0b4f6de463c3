import type { onRequestHookHandler, preHandlerHookHandler, preValidationHookHandler } from 'fastify'

/**
 * What an application may add to the WebSocket route. Its hooks run after
 * the hub's admission checks (origin, rates, limits, authentication), so a
 * refused or flooding client never reaches them.
 */
export interface WsRouteOptions {
  onRequest?: onRequestHookHandler | onRequestHookHandler[]
  preValidation?: preValidationHookHandler | preValidationHookHandler[]
  preHandler?: preHandlerHookHandler | preHandlerHookHandler[]
  /** Route config, readable by other plugins' hooks as `request.routeOptions.config`. */
  config?: Record<string, unknown>
}
