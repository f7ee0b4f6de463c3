import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { ConnectionManager } from './connection-manager.js'
import type { MessageDispatcher } from './message-dispatcher.js'
import type { Registry } from './registries/registry.js'
import type { RestAuth } from './options.js'
import { CloseCodes } from './protocol.js'
import type { HubStats } from './index.js'
import {
  ConnectionInfoSchema,
  ConnectionList,
  DeliveryResponse,
  ErrorSchema,
  HealthSchema,
  LiveSchema,
  StatsSchema,
  type HealthReport,
  IdParams,
  ListQuery,
  PushBody,
  TopicParams
} from './rest-schemas.js'

export interface RestRouteDeps {
  prefix: string
  health: () => HealthReport
  stats: () => HubStats
  auth: RestAuth | undefined
  connections: ConnectionManager
  dispatcher: MessageDispatcher
  registry: Registry
}

const TAGS = ['ws-hub']

function notFound (reply: FastifyReply, what: string): FastifyReply {
  return reply.code(404).send({ statusCode: 404, error: 'Not Found', code: 'unknown_client', message: what })
}

/** The REST push API, mounted under its own prefix in an encapsulated context. */
export async function registerRestRoutes (parent: FastifyInstance, deps: RestRouteDeps): Promise<void> {
  const { auth, connections, dispatcher, registry } = deps
  if (auth === undefined) {
    parent.log.warn(`ws-hub: the REST push API under ${deps.prefix} is open to anyone who can reach it; set rest.auth to protect it`)
  }

  // Probes sit outside the auth context: load balancers carry no API key.
  await parent.register(async (probes) => {
    const app = probes.withTypeProvider<TypeBoxTypeProvider>()
    app.get('/health', {
      schema: { tags: TAGS, summary: 'Readiness: degraded while the broker is unreachable', response: { 200: HealthSchema } }
    }, async () => deps.health())
    app.get('/health/live', {
      schema: { tags: TAGS, summary: 'Liveness: the process serves requests', response: { 200: LiveSchema } }
    }, async () => ({ status: 'ok' as const }))
  }, { prefix: deps.prefix })

  await parent.register(async (api) => {
    const app = api.withTypeProvider<TypeBoxTypeProvider>()
    app.addSchema(ErrorSchema)
    app.addSchema(ConnectionInfoSchema)

    if (auth !== undefined) {
      app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
        let allowed = false
        try {
          allowed = await auth(request)
        } catch (err) {
          // An auth hook that throws must deny, never fall through to open.
          request.log.error({ err }, 'ws-hub: rest.auth threw; denying the request')
        }
        if (allowed !== true) {
          return reply.code(401).send({ statusCode: 401, error: 'Unauthorized', code: 'unauthorized', message: 'missing or invalid credentials' })
        }
      })
    }

    const errors = { 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema }

    app.get('/stats', {
      schema: { tags: TAGS, summary: 'Counters of this instance', response: { 200: StatsSchema, 401: ErrorSchema } }
    }, async () => deps.stats())

    app.get('/connections', {
      schema: { tags: TAGS, summary: 'List connections', querystring: ListQuery, response: { 200: ConnectionList, 400: ErrorSchema, 401: ErrorSchema } }
    }, async (request) => {
      return registry.list({ limit: request.query.limit, offset: request.query.offset })
    })

    app.get('/connections/:id', {
      schema: { tags: TAGS, summary: 'Describe one connection', params: IdParams, response: { 200: ConnectionInfoSchema, ...errors } }
    }, async (request, reply) => {
      const info = connections.info(request.params.id)
      if (info !== undefined) return info
      return notFound(reply, `no client with id ${request.params.id}`)
    })

    app.delete('/connections/:id', {
      schema: { tags: TAGS, summary: 'Close a connection with code 4000', params: IdParams, response: { 204: Type204, ...errors } }
    }, async (request, reply) => {
      if (!connections.closeById(request.params.id, CloseCodes.closedByServer, 'closed by server')) {
        return notFound(reply, `no client with id ${request.params.id}`)
      }
      return reply.code(204).send()
    })

    app.post('/connections/broadcast', {
      schema: { tags: TAGS, summary: 'Send {"type":"server-broadcast"} to every client', body: PushBody, response: { 200: DeliveryResponse, ...errors } }
    }, async (request) => {
      return dispatcher.broadcast(request.body.message)
    })

    app.post('/connections/:id/send', {
      schema: { tags: TAGS, summary: 'Send {"type":"direct","from":"server"} to one client', params: IdParams, body: PushBody, response: { 200: DeliveryResponse, ...errors } }
    }, async (request, reply) => {
      const report = await dispatcher.sendTo(request.params.id, request.body.message)
      if (report.recipients === 0 && report.remoteInstances === 0) return notFound(reply, `no client with id ${request.params.id}`)
      return report
    })

    app.post('/topics/:topic/publish', {
      schema: { tags: TAGS, summary: 'Publish to a topic\'s subscribers', params: TopicParams, body: PushBody, response: { 200: DeliveryResponse, ...errors } }
    }, async (request) => {
      return dispatcher.publish(request.params.topic, request.body.message)
    })
  }, { prefix: deps.prefix })
}

const Type204 = { type: 'null', description: 'Closed' }
