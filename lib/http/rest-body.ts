import { errorCodes, type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify'
import { nestsDeeperThan } from '../protocol/frames.js'
import { InvalidArgumentError, InvalidMessageError } from '../errors.js'

/** An error Fastify answers with its status and code, as it does its own. */
function httpError (statusCode: number, code: string, message: string): Error & { statusCode: number, code: string } {
  return Object.assign(new Error(message), { statusCode, code })
}

/**
 * The REST API's JSON body parser, in place of Fastify's for the hub's
 * routes only. It parses as the socket parses frames:
 * - plain `JSON.parse`, so `__proto__` and `constructor` keys are own data
 *   properties (JSON.parse defines them, it never sets a prototype) and are
 *   forwarded as data. Fastify's parser refuses them as "not valid JSON";
 *   the hub never merges a body into another object, so they are harmless.
 * - the depth limit of frames (`maxJsonDepth`, the body itself one level,
 *   as a frame is), checked here, before schema validation and before the
 *   facade: `JSON.stringify`, which a push ends in, recurses and overflowed
 *   the stack at a few thousand levels. `JSON.parse` and the check are
 *   iterative, so no depth reaches a recursive step.
 */
export function jsonBodyParser (maxJsonDepth: number) {
  return async function parseJsonBody (_request: FastifyRequest, body: string): Promise<unknown> {
    // The same errors Fastify's own parser answers with.
    if (body.length === 0) throw new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY()
    let value: unknown
    try {
      value = JSON.parse(body)
    } catch {
      throw new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY()
    }
    if (nestsDeeperThan(value, maxJsonDepth)) {
      throw httpError(400, 'invalid_message', `body nests deeper than ${maxJsonDepth} levels (maxJsonDepth)`)
    }
    return value
  }
}

/**
 * Errors of the REST routes. Fastify's errors (validation, body size,
 * media type: they carry a status) go on to the parent handler unchanged.
 * An unexpected error is logged here and answered without its text: the
 * default handler would send `err.message` ("Maximum call stack size
 * exceeded", a backend's address) to whoever called.
 */
export function restErrorHandler (error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error instanceof InvalidArgumentError) {
    return reply.code(400).send({ statusCode: 400, error: 'Bad Request', code: 'invalid_argument', message: error.message })
  }
  // A message that does not match its topic's schema: what a client gets as `invalid_message`.
  if (error instanceof InvalidMessageError) {
    return reply.code(400).send({ statusCode: 400, error: 'Bad Request', code: 'invalid_message', message: error.message })
  }
  if (typeof error.statusCode === 'number') throw error
  request.log.error({ err: error }, 'ws-hub: REST request failed')
  return reply.code(500).send({ statusCode: 500, error: 'Internal Server Error', code: 'internal_error', message: 'internal error' })
}
