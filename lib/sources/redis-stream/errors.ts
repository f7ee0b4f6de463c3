import { HubError } from '../../errors.js'

/** The code of every error the Redis Streams source raises (logged with the source's state changes). */
export const REDIS_STREAM_SOURCE_ERROR = 'WS_HUB_SOURCE_REDIS_STREAM'

export class RedisStreamError extends HubError {
  override name = 'RedisStreamError'

  constructor (message: string, options?: { cause?: unknown }) {
    super(REDIS_STREAM_SOURCE_ERROR, message, options)
  }
}
