import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest, FastifySchema } from 'fastify'
import type { WsRouteOptions } from '../options/route-options.js'
import type { WebSocket } from 'ws'
import { Connection } from '../connections/connection.js'
import type { ConnectionManager } from '../connections/connection-manager.js'
import type { MessageDispatcher } from '../dispatch/message-dispatcher.js'
import type { ProtocolHandler } from '../protocol/protocol-handler.js'
import type { Subscriptions } from '../topics/subscriptions.js'
import type { Admission, HandshakeCounters } from '../connections/admission.js'
import type { NormalizedOptions } from '../options/hub-options.js'
import { normalizeIp } from '../connections/ip.js'
import { serializeFrame } from '../protocol/serialize.js'
import type { Telemetry } from '../telemetry.js'
import type { WsHub } from '../hub.js'

export interface WsRouteDeps {
  options: NormalizedOptions
  connections: ConnectionManager
  dispatcher: MessageDispatcher
  protocol: ProtocolHandler
  subscriptions: Subscriptions
  admission: Admission
  counters: HandshakeCounters
  telemetry: Telemetry
  hub: WsHub
  route: WsRouteOptions
}

/**
 * Registers the WebSocket route. Admission runs in `onRequest`, which
 * @fastify/websocket runs before the upgrade: a refused client never costs
 * a WebSocket.
 */
export function registerWsRoute (fastify: FastifyInstance, deps: WsRouteDeps): void {
  const { options, connections, protocol, admission, counters, telemetry, hub, route } = deps

  // Listeners that live as long as the socket log through the instance's
  // logger: capturing `request` would keep the whole HTTP request object
  // (headers, raw message) alive for every open connection.
  const log = fastify.log

  function onSocket (socket: WebSocket, request: FastifyRequest): void {
    const admitted = admission.admitted(request)
    const identity = admitted?.identity ?? null
    const connection = new Connection(randomUUID(), admitted?.ip ?? normalizeIp(request.ip, options.ipv6Prefix), identity, socket)
    if (admitted !== undefined) socket.once('close', () => admitted.slot.release())
    counters.accepted++
    connections.add(connection)
    telemetry.connectionOpened(connection)
    if (hub.listenerCount('connect') > 0) hub.emit('connect', connection.info(connections.instanceId))

    socket.on('message', (data, isBinary) => {
      protocol.handle(connection, data, isBinary).catch((err: unknown) => {
        log.error({ err, clientId: connection.id }, 'ws-hub: unexpected error handling a message')
      })
    })
    socket.on('pong', () => { connection.alive = true })
    socket.once('close', (code, reason) => {
      connections.remove(connection)
      const reasonText = reason.toString()
      telemetry.connectionClosed(connection, code, reasonText)
      if (hub.listenerCount('disconnect') > 0) hub.emit('disconnect', connection.info(connections.instanceId), { code, reason: reasonText })
      log.info({ clientId: connection.id, ip: connection.ip, userId: connection.userId, code, reason: reasonText, durationMs: Date.now() - connection.connectedAt }, 'ws-hub: connection closed')
      if (options.announce) announce(deps, `Client ${connection.id} left.`, undefined)
      const service = options.service
      if (service.onDisconnect !== undefined) {
        runHook(log, connection, 'onDisconnect', () => service.onDisconnect?.(protocol.context(connection), { code, reason: reasonText }))
      }
    })

    connections.write(connection, serializeFrame(identity === null
      ? { type: 'welcome', clientId: connection.id }
      : { type: 'welcome', clientId: connection.id, userId: identity.userId }))
    // After the welcome, which a client reads before it knows about batches.
    if (connections.batching && wantsBatches(socket, request)) connections.startBatching(connection)
    // `subscribed` frames follow the welcome, once each topic is confirmed.
    deps.subscriptions.subscribeIdentity(connection)
    request.log.info({ clientId: connection.id, ip: connection.ip, userId: connection.userId, batching: connection.batch !== null }, 'ws-hub: connection opened')
    if (options.announce) announce(deps, `Client ${connection.id} joined.`, connection)
    const service = options.service
    if (service.onConnect !== undefined) {
      // Hooks are called as methods so a class-based service keeps its `this`.
      runHook(request.log, connection, 'onConnect', () => service.onConnect?.(protocol.context(connection)))
    }
  }

  fastify.route({
    method: 'GET',
    url: options.path,
    // @fastify/swagger reads `hide`; the WebSocket protocol is documented apart.
    schema: HIDDEN,
    onRequest: [admission.check, ...asArray(route.onRequest)],
    preValidation: asArray(route.preValidation),
    preHandler: asArray(route.preHandler),
    // A hook of the application's may answer the handshake itself (a 403,
    // say); an answered request never upgrades, so its slots go back now
    // rather than when the client's keep-alive socket closes.
    onResponse: async (request) => { admission.admitted(request)?.slot.release() },
    config: route.config ?? {},
    handler: async (_request, reply) => {
      return reply.code(400).send({
        statusCode: 400,
        error: 'Bad Request',
        code: 'upgrade_required',
        message: 'this endpoint accepts WebSocket connections only'
      })
    },
    wsHandler: onSocket
  })
}

function asArray<T> (value: T | T[] | undefined): T[] {
  if (value === undefined) return []
  return Array.isArray(value) ? value : [value]
}

/** Batching is opt-in, so existing clients keep getting one frame per message. */
function wantsBatches (socket: WebSocket, request: FastifyRequest): boolean {
  if (socket.protocol.endsWith('.batch')) return true
  const query = request.query as Record<string, unknown> | undefined
  return query?.batch === '1' || query?.batch === 'true'
}

const HIDDEN = { hide: true } as FastifySchema

/** Join and leave notices; the joining client knows it joined from `welcome`. */
function announce (deps: WsRouteDeps, message: string, exclude: Connection | undefined): void {
  deps.dispatcher.send({ kind: 'all' }, { type: 'system', message }, { exclude }).catch(() => {
    // The dispatcher logs broker failures itself; nothing else can reject.
  })
}

/** User hooks may throw or reject; neither may reach the socket or the process. */
function runHook (log: FastifyBaseLogger, connection: Connection, name: string, hook: () => void | Promise<void>): void {
  const logFailure = (err: unknown): void => {
    log.error({ err, clientId: connection.id, hook: name }, 'ws-hub: service hook failed')
  }
  try {
    const result = hook()
    if (result !== undefined) Promise.resolve(result).catch(logFailure)
  } catch (err) {
    logFailure(err)
  }
}
