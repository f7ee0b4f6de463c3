import type { FastifyInstance } from 'fastify'
import { buildAsyncApiDocument, type AsyncApiOptions } from './asyncapi.js'

export interface AsyncApiRouteOptions extends AsyncApiOptions {
  /** The REST prefix; the document is served at `<prefix>/asyncapi.json`. */
  prefix: string
  /** The WebSocket path the document describes. */
  path: string
}

/**
 * Serves the AsyncAPI 3.0.0 document of the wire protocol at
 * `GET <prefix>/asyncapi.json`. Like the Swagger JSON it is public: it
 * describes the protocol, not any client, so it sits outside `rest.auth`.
 * The document is built and serialized once, at registration.
 */
export function registerAsyncApiRoute (app: FastifyInstance, options: AsyncApiRouteOptions): void {
  const body = JSON.stringify(buildAsyncApiDocument(options))
  app.get(`${options.prefix.replace(/\/+$/, '')}/asyncapi.json`, {
    schema: {
      tags: ['ws-hub'],
      summary: 'The WebSocket protocol as an AsyncAPI 3.0.0 document',
      response: { 200: { description: 'An AsyncAPI 3.0.0 document', type: 'object', additionalProperties: true } }
    }
  }, async (_request, reply) => reply.type('application/json; charset=utf-8').send(body))
}
