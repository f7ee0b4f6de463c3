import type { FastifyInstance, FastifyReply } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { RestAuth, RestRouteName } from '../options/hub-options.js'
import { authHook } from './rest-auth.js'
import type { WsHub } from '../hub.js'
import { ClusterStateError, HistoryOffError, PresenceOffError, QueryTimeoutError } from '../errors.js'
import type { PresencePage } from '../cluster/presence.js'
import { jsonBodyParser, restErrorHandler } from './rest-body.js'
import { longIdConstraint, withLongIds } from './long-ids.js'
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
  PublishBody,
  PublishResponse,
  HistoryQuery,
  HistoryResponse,
  PresencePageSchema,
  PresenceQuerySchema,
  PresenceStatsSchema,
  TopicParams,
  UserParams,
  ClientTopicParams,
  UserTopicParams
} from './rest-schemas.js'

export interface RestRouteDeps {
  prefix: string
  disable: ReadonlySet<RestRouteName>
  health: () => HealthReport
  /** false: open on purpose (the plugin warns at startup). */
  auth: RestAuth | false
  hub: WsHub
  /** Bodies nest no deeper than a client's frames may. */
  maxJsonDepth: number
}

const TAGS = ['ws-hub']

function notFound (reply: FastifyReply, code: string, what: string): FastifyReply {
  return reply.code(404).send({ statusCode: 404, error: 'Not Found', code, message: what })
}

/** The REST push API, mounted under its own prefix in an encapsulated context. */
export async function registerRestRoutes (parent: FastifyInstance, deps: RestRouteDeps): Promise<void> {
  const { auth, hub } = deps
  if (auth === false) {
    parent.log.warn(`ws-hub: the REST push API under ${deps.prefix} is open to anyone who can reach it (rest.auth is false); set rest.auth to protect it`)
  }

  // Probes sit outside the auth context: load balancers carry no API key.
  await parent.register(async (probes) => {
    const app = probes.withTypeProvider<TypeBoxTypeProvider>()
    app.get('/health', {
      schema: { tags: TAGS, summary: 'Readiness: degraded while the broker or the registry is unreachable', response: { 200: HealthSchema } }
    }, async () => deps.health())
    app.get('/health/live', {
      schema: { tags: TAGS, summary: 'Liveness: the process serves requests', response: { 200: LiveSchema } }
    }, async () => ({ status: 'ok' as const }))
  }, { prefix: deps.prefix })

  await parent.register(async (api) => {
    const app = api.withTypeProvider<TypeBoxTypeProvider>()
    app.addSchema(ErrorSchema)
    app.addSchema(ConnectionInfoSchema)

    if (auth !== false) app.addHook('onRequest', authHook(auth))
    // In this scope only: the app's own routes keep Fastify's parser.
    app.removeContentTypeParser('application/json')
    app.addContentTypeParser('application/json', { parseAs: 'string' }, jsonBodyParser(deps.maxJsonDepth))
    app.setErrorHandler(restErrorHandler)

    const errors = { 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema, 503: ErrorSchema }
    // What Fastify answers before a body reaches the schema: over bodyLimit, or not JSON.
    const bodyErrors = { ...errors, 413: ErrorSchema, 415: ErrorSchema }

    const on = (name: RestRouteName): boolean => !deps.disable.has(name)

    if (on('stats')) {
      app.get('/stats', {
        schema: { tags: TAGS, summary: 'Counters of this instance', response: { 200: StatsSchema, 401: ErrorSchema } }
      }, async () => hub.stats())
    }

    if (on('listConnections')) {
      app.get('/connections', {
        schema: { tags: TAGS, summary: 'List connections of every instance', querystring: ListQuery, response: { 200: ConnectionList, 400: ErrorSchema, 401: ErrorSchema } }
      }, async (request) => hub.list({ limit: request.query.limit, offset: request.query.offset }))
    }

    if (on('getConnection')) {
      withLongIds('/connections', 'id', '', (route) => app.get(route.url, {
        preValidation: route.preValidation,
        schema: { ...route.schema, tags: TAGS, summary: 'Describe one connection, on whichever instance holds it', params: IdParams, response: { 200: ConnectionInfoSchema, ...errors } }
      }, async (request, reply) => {
        let info
        try {
          info = await hub.get(request.params.id)
        } catch (err) {
          if (!(err instanceof QueryTimeoutError)) throw err
          return reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', code: 'instance_unavailable', message: `the instance holding client ${request.params.id} did not answer` })
        }
        if (info !== null) return info
        return notFound(reply, 'unknown_client', `no client with id ${request.params.id}`)
      }))
    }

    if (on('closeConnection')) {
      withLongIds('/connections', 'id', '', (route) => app.delete(route.url, {
        preValidation: route.preValidation,
        schema: { ...route.schema, tags: TAGS, summary: 'Close a connection with code 4000, on whichever instance holds it', params: IdParams, response: { 204: Type204, ...errors } }
      }, async (request, reply) => {
        const report = await hub.close({ clientId: request.params.id })
        if (report.recipients === 0 && report.remoteInstances === 0) return notFound(reply, 'unknown_client', `no client with id ${request.params.id}`)
        return reply.code(204).send()
      }))
    }

    if (on('broadcast')) {
      app.post('/connections/broadcast', {
        schema: { tags: TAGS, summary: 'Send {"type":"server-broadcast"} to every client', body: PushBody, response: { 200: DeliveryResponse, ...bodyErrors } }
      }, async (request) => hub.broadcast(request.body.message))
    }

    if (on('sendToConnection')) {
      withLongIds('/connections', 'id', '/send', (route) => app.post(route.url, {
        preValidation: route.preValidation,
        schema: { ...route.schema, tags: TAGS, summary: 'Send {"type":"direct","from":"server"} to one client', params: IdParams, body: PushBody, response: { 200: DeliveryResponse, ...bodyErrors } }
      }, async (request, reply) => {
        const report = await hub.sendTo(request.params.id, request.body.message)
        if (report.recipients === 0 && report.remoteInstances === 0) return notFound(reply, 'unknown_client', `no client with id ${request.params.id}`)
        return report
      }))
    }

    if (on('publish')) {
      app.post('/topics/:topic/publish', {
        schema: { tags: TAGS, summary: 'Publish to a topic\'s subscribers (idempotent with a key; with its offset on a history topic)', params: TopicParams, body: PublishBody, response: { 200: PublishResponse, ...bodyErrors } }
      }, async (request) => {
        const { message, idempotencyKey } = request.body
        return await hub.publish(request.params.topic, message, idempotencyKey === undefined ? {} : { idempotencyKey })
      })
    }

    if (on('history')) {
      app.get('/topics/:topic/history', {
        schema: { tags: TAGS, summary: 'A history topic\'s publications after sinceOffset (in epoch), or its last `limit`, with its current offset and epoch', params: TopicParams, querystring: HistoryQuery, response: { 200: HistoryResponse, ...errors } }
      }, async (request, reply) => {
        const { sinceOffset, epoch, limit } = request.query
        if ((sinceOffset === undefined) !== (epoch === undefined)) {
          return reply.code(400).send({ statusCode: 400, error: 'Bad Request', code: 'invalid_query', message: 'sinceOffset and epoch go together' })
        }
        const since = sinceOffset === undefined || epoch === undefined ? undefined : { offset: sinceOffset, epoch }
        try {
          return await hub.history(request.params.topic, since === undefined ? { limit } : { since, limit })
        } catch (err) {
          if (err instanceof HistoryOffError) return notFound(reply, 'history_off', `topic ${request.params.topic} keeps no history`)
          throw err
        }
      })
    }

    // Presence: 404 presence_off for a topic whose rules do not set
    // presence, 503 while the registry cannot answer.
    const presence = async (reply: FastifyReply, topic: string, query: { limit?: number, cursor?: string }): Promise<PresencePage | FastifyReply> => {
      try {
        return await hub.presence(topic, query)
      } catch (err) {
        if (err instanceof PresenceOffError) return notFound(reply, 'presence_off', `topic ${topic} has no presence`)
        if (!(err instanceof ClusterStateError)) throw err
        return reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', code: 'registry_unavailable', message: 'the cluster state cannot answer; try again later' })
      }
    }

    if (on('presence')) {
      app.get('/topics/:topic/presence', {
        schema: { tags: TAGS, summary: 'One page of a presence topic\'s members, cluster-wide, with its counts', params: TopicParams, querystring: PresenceQuerySchema, response: { 200: PresencePageSchema, ...errors } }
      }, async (request, reply) => presence(reply, request.params.topic, request.query))
    }

    if (on('presenceStats')) {
      app.get('/topics/:topic/presence/stats', {
        schema: { tags: TAGS, summary: 'How many connections and users a presence topic has, cluster-wide', params: TopicParams, response: { 200: PresenceStatsSchema, ...errors } }
      }, async (request, reply) => {
        const page = await presence(reply, request.params.topic, { limit: 0 })
        return 'clients' in page ? { clients: page.clients, users: page.users } : page
      })
    }

    if (on('sendToUser')) {
      withLongIds('/users', 'userId', '/send', (route) => app.post(route.url, {
        preValidation: route.preValidation,
        schema: { ...route.schema, tags: TAGS, summary: 'Send {"type":"direct","from":"server","user":...} to every connection of a user', params: UserParams, body: PushBody, response: { 200: DeliveryResponse, ...bodyErrors } }
      }, async (request, reply) => {
        const report = await hub.sendToUser(request.params.userId, request.body.message)
        if (report.recipients === 0 && report.remoteInstances === 0) return notFound(reply, 'unknown_user', `no connection of user ${request.params.userId}`)
        return report
      }))
    }

    if (on('closeUser')) {
      withLongIds('/users', 'userId', '', (route) => app.delete(route.url, {
        preValidation: route.preValidation,
        schema: { ...route.schema, tags: TAGS, summary: 'Close every connection of a user with 4000 (for example on logout)', params: UserParams, response: { 204: Type204, ...errors } }
      }, async (request, reply) => {
        const report = await hub.close({ userId: request.params.userId })
        if (report.recipients === 0 && report.remoteInstances === 0) return notFound(reply, 'unknown_user', `no connection of user ${request.params.userId}`)
        return reply.code(204).send()
      }))
    }

    // Server-side subscriptions: 204 once the holders were told, 404 when no instance holds the target.
    longIdConstraint(parent)
    const subscription = (subscribe: boolean) => async (target: { clientId: string } | { userId: string }, topic: string, reply: FastifyReply): Promise<FastifyReply> => {
      const report = subscribe ? await hub.subscribe(target, topic) : await hub.unsubscribe(target, topic)
      if (report.recipients > 0 || report.remoteInstances > 0) return reply.code(204).send()
      return 'clientId' in target
        ? notFound(reply, 'unknown_client', `no client with id ${target.clientId}`)
        : notFound(reply, 'unknown_user', `no connection of user ${target.userId}`)
    }
    for (const [name, subscribe] of [['subscribeConnection', true], ['unsubscribeConnection', false]] as const) {
      if (!on(name)) continue
      const summary = subscribe ? 'Subscribe a connection to a topic (server-side; topic rules do not apply)' : 'Unsubscribe a connection from a topic'
      withLongIds('/connections', 'id', '/topics/:topic', (route) => app.route({
        method: subscribe ? 'PUT' : 'DELETE',
        url: route.url,
        preValidation: route.preValidation,
        constraints: route.constraints,
        schema: { ...route.schema, tags: TAGS, summary, params: ClientTopicParams, response: { 204: Type204, ...errors } },
        handler: async (request, reply) => subscription(subscribe)({ clientId: request.params.id }, request.params.topic, reply)
      }))
    }
    for (const [name, subscribe] of [['subscribeUser', true], ['unsubscribeUser', false]] as const) {
      if (!on(name)) continue
      const summary = subscribe ? 'Subscribe every connection of a user to a topic, on every instance' : 'Unsubscribe every connection of a user from a topic'
      withLongIds('/users', 'userId', '/topics/:topic', (route) => app.route({
        method: subscribe ? 'PUT' : 'DELETE',
        url: route.url,
        preValidation: route.preValidation,
        constraints: route.constraints,
        schema: { ...route.schema, tags: TAGS, summary, params: UserTopicParams, response: { 204: Type204, ...errors } },
        handler: async (request, reply) => subscription(subscribe)({ userId: request.params.userId }, request.params.topic, reply)
      }))
    }
  }, { prefix: deps.prefix })
}

const Type204 = { type: 'null', description: 'Done' }
