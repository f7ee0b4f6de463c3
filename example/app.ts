/**
 * The example app: a chat page, Swagger docs for the REST push API, and the
 * hub with a demo service. `server.ts` listens; tests call this directly.
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import fastifyStatic from '@fastify/static'
import Type from 'typebox'
import wsHub, { redactedRequestSerializer, type TopicsOption } from 'fastify-ws-hub'
import { readConfig, type Env } from './config.js'
import { API_KEY_HEADER } from './api-key.js'
import { demoService, registerTicker } from './demo-service.js'
import { demoIdentity, INBOX_HISTORY, USER_NAMESPACE } from './notifications.js'

// The example lives in the library's repository and imports it by name, so
// its package.json is the root of the checkout (or of the Docker image):
// that is where the version and the chat page are, compiled or not.
const packageJsonPath = createRequire(import.meta.url).resolve('fastify-ws-hub/package.json')
const { version } = createRequire(import.meta.url)(packageJsonPath) as { version: string }
export const PUBLIC_DIR = join(dirname(packageJsonPath), 'example', 'public')
/** The compiled browser client (`fastify-ws-hub/client`), served at CLIENT_PREFIX. */
export const CLIENT_DIR = join(dirname(packageJsonPath), 'dist', 'client')
export const CLIENT_PREFIX = '/client/'

/**
 * Who may read and write which topics. `prices` (no `:`, so under
 * `default`) is the price feed's: only the server publishes there, and what it
 * publishes must be a tick, so no browser can push fake prices. `chat:*`
 * rooms are open to anyone who subscribed, with presence and join/leave.
 * `user:<id>` is a user's inbox (notifications.ts): its owner subscribes,
 * the server publishes, and history lets a device that was away catch up.
 * Any other namespace is refused (`unknown_namespace`).
 */
export const EXAMPLE_TOPICS: TopicsOption = {
  default: {
    subscribe: 'all',
    publish: 'none',
    schema: Type.Object({ symbol: Type.String(), price: Type.Number() }, { additionalProperties: false })
  },
  namespaces: {
    chat: { subscribe: 'all', publish: 'subscribers', presence: true, joinLeave: true },
    [USER_NAMESPACE]: { subscribe: 'owner', publish: 'none', history: INBOX_HISTORY }
  }
}

function description (restPrefix: string): string {
  return [
    'The REST push API of the fastify-ws-hub example.',
    '',
    'Clients connect with a WebSocket to **`/ws`** and speak JSON frames:',
    '`broadcast`, `direct`, `subscribe`, `unsubscribe`, `publish`, `history`, `ping`, plus this',
    'example\'s custom `roll` and `notify-me` types. The routes below push to those clients from a backend.',
    '',
    `The WebSocket protocol itself is described by an AsyncAPI 3.0.0 document: [\`${restPrefix}/asyncapi.json\`](${restPrefix}/asyncapi.json).`
  ].join('\n')
}

export async function buildExampleApp (env: Env = process.env, server: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const config = readConfig(env)
  // The request serializer redacts tokens from logged URLs (?token=...).
  const app = Fastify({ logger: { level: config.logLevel, serializers: { req: redactedRequestSerializer } }, ...server })
  const secured = typeof config.hub.rest === 'object' && typeof config.hub.rest.auth === 'function'
  const restPrefix = (typeof config.hub.rest === 'object' ? config.hub.rest.prefix : undefined) ?? '/api'

  // Swagger first: it documents the routes registered after it, the hub's included.
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'fastify-ws-hub example', description: description(restPrefix), version },
      tags: [{ name: 'ws-hub', description: 'Push to WebSocket clients' }],
      ...(secured
        ? {
            components: { securitySchemes: { apiKey: { type: 'apiKey', in: 'header', name: API_KEY_HEADER } } },
            security: [{ apiKey: [] }]
          }
        : {})
    }
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })

  if (!secured) app.log.warn('example: API_KEY is unset, so the REST push API is open to anyone who can reach it; set API_KEY to protect it')
  await app.register(wsHub, { ...config.hub, topics: EXAMPLE_TOPICS, service: demoService, authenticate: demoIdentity })
  // With KAFKA_BROKERS the ticks come from price-feed.ts through a source
  // (config.ts); a ticker in each instance as well would add one more copy
  // of every price per instance.
  if ((config.hub.sources ?? []).length === 0) registerTicker(app)

  // Only the files present at start are served (no wildcard route), and `/`
  // is index.html.
  await app.register(fastifyStatic, { root: PUBLIC_DIR, wildcard: false })
  // The page imports the typed client as plain ES modules: only the
  // compiled .js files (not maps or typings).
  await app.register(fastifyStatic, {
    root: CLIENT_DIR,
    prefix: CLIENT_PREFIX,
    wildcard: false,
    decorateReply: false,
    allowedPath: (pathName) => pathName.endsWith('.js')
  })
  return app
}
