import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import type { RestAuth } from 'fastify-ws-hub'

export const API_KEY_HEADER = 'x-api-key'

/**
 * A `rest.auth` hook that accepts requests carrying the key in `x-api-key`.
 * Both sides are hashed first: timingSafeEqual needs equal lengths, and
 * comparing digests keeps the key's length from leaking through timing too.
 */
export function apiKeyAuth (expected: string): RestAuth {
  const expectedDigest = digest(expected)
  return (request: FastifyRequest) => {
    const given = request.headers[API_KEY_HEADER]
    if (typeof given !== 'string') return false
    return timingSafeEqual(digest(given), expectedDigest)
  }
}

function digest (value: string): Buffer {
  return createHash('sha256').update(value).digest()
}
