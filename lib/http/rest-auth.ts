import type { FastifyReply, FastifyRequest } from 'fastify'
import type { RestAuth } from '../options/hub-options.js'

/**
 * The `onRequest` hook that guards the REST API and the metrics route.
 * A hook that throws denies: failing open would publish the push API.
 */
export function authHook (auth: RestAuth) {
  return async function checkAuth (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    let allowed = false
    try {
      allowed = await auth(request)
    } catch (err) {
      request.log.error({ err }, 'ws-hub: rest.auth threw; denying the request')
    }
    if (allowed !== true) {
      await reply.code(401).send({ statusCode: 401, error: 'Unauthorized', code: 'unauthorized', message: 'missing or invalid credentials' })
    }
  }
}
