import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from 'fastify'
import type { WebSocket } from 'ws'
import { Connection } from './connection.js'
import type { ConnectionManager } from './connection-manager.js'
import type { MessageDispatcher } from './message-dispatcher.js'
import type { ProtocolHandler } from './protocol-handler.js'
import type { Registry } from './registries/registry.js'
import type { NormalizedOptions } from './options.js'
import { normalizeIp } from './ip.js'
import { Slot } from './slot.js'
import { serializeFrame } from './frame.js'

export interface HandshakeCounters {
  accepted: number
  rejectedIpLimit: number
  rejectedTotalLimit: number
  abortedBeforeUpgrade: number
}

export interface WsRouteDeps {
  options: NormalizedOptions
  connections: ConnectionManager
  dispatcher: MessageDispatcher
  protocol: ProtocolHandler
  registry: Registry
  counters: HandshakeCounters
}

/**
 * Registers the WebSocket route. Limits are checked in `onRequest`, which
 * @fastify/websocket runs before the upgrade: a rejected client never costs
 * a WebSocket.
 */
export function registerWsRoute (fastify: FastifyInstance, deps: WsRouteDeps): void {
  const { options, connections, protocol, registry, counters } = deps
  const slots = new WeakMap<IncomingMessage, Slot>()
  const limits = { perIp: options.maxConnectionsPerIp, total: options.maxConnections }

  async function reserveSlot (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    // A plain GET (no upgrade) reserves nothing; the HTTP handler answers 400.
    if (request.ws !== true) return
    const ip = normalizeIp(request.ip)
    const result = await registry.reserve(ip, limits)
    if (!result.ok) {
      const perIp = result.reason === 'ip_limit'
      if (perIp) counters.rejectedIpLimit++
      else counters.rejectedTotalLimit++
      request.log.warn({ ip, reason: result.reason }, 'ws-hub: handshake rejected')
      await reply
        .code(perIp ? 429 : 503)
        .header('retry-after', String(options.retryAfter))
        .send({
          statusCode: perIp ? 429 : 503,
          error: perIp ? 'Too Many Requests' : 'Service Unavailable',
          code: result.reason,
          message: perIp
            ? `too many connections from this address (limit ${options.maxConnectionsPerIp})`
            : `the server is at its connection limit (${options.maxConnections})`
        })
      return
    }
    const slot = new Slot(registry, ip, request.log)
    const socket = request.raw.socket as IncomingMessage['socket'] | undefined
    if (socket !== undefined && socket !== null) {
      // The TCP socket outlives every path: upgrade, aborted handshake, a
      // later hook's rejection, or a client that hung up while we awaited.
      if (socket.destroyed) {
        counters.abortedBeforeUpgrade++
        slot.release()
        return
      }
      socket.once('close', () => slot.release())
    }
    slots.set(request.raw, slot)
  }

  function onSocket (socket: WebSocket, request: FastifyRequest): void {
    const slot = slots.get(request.raw)
    const connection = new Connection(randomUUID(), slot?.ip ?? normalizeIp(request.ip), null, socket)
    if (slot !== undefined) socket.once('close', () => slot.release())
    counters.accepted++
    connections.add(connection)

    socket.on('message', (data, isBinary) => {
      protocol.handle(connection, data, isBinary).catch((err: unknown) => {
        request.log.error({ err, clientId: connection.id }, 'ws-hub: unexpected error handling a message')
      })
    })
    socket.on('pong', () => { connection.alive = true })
    socket.once('close', (code, reason) => {
      connections.remove(connection)
      const reasonText = reason.toString()
      request.log.info({ clientId: connection.id, ip: connection.ip, code, reason: reasonText, durationMs: Date.now() - connection.connectedAt }, 'ws-hub: connection closed')
      if (options.announce) announce(deps, `Client ${connection.id} left.`, undefined)
      const onDisconnect = options.service.onDisconnect
      if (onDisconnect !== undefined) {
        runHook(request, connection, 'onDisconnect', () => onDisconnect(protocol.context(connection), { code, reason: reasonText }))
      }
    })

    connections.write(connection, serializeFrame({ type: 'welcome', clientId: connection.id }))
    request.log.info({ clientId: connection.id, ip: connection.ip }, 'ws-hub: connection opened')
    if (options.announce) announce(deps, `Client ${connection.id} joined.`, connection)
    const onConnect = options.service.onConnect
    if (onConnect !== undefined) {
      runHook(request, connection, 'onConnect', () => onConnect(protocol.context(connection)))
    }
  }

  fastify.route({
    method: 'GET',
    url: options.path,
    // @fastify/swagger reads `hide`; the WebSocket protocol is documented apart.
    schema: HIDDEN,
    onRequest: reserveSlot,
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

const HIDDEN = { hide: true } as FastifySchema

/** Join and leave notices; the joining client knows it joined from `welcome`. */
function announce (deps: WsRouteDeps, message: string, exclude: Connection | undefined): void {
  deps.dispatcher.send({ kind: 'all' }, { type: 'system', message }, { exclude }).catch(() => {
    // The dispatcher logs broker failures itself; nothing else can reject.
  })
}

/** User hooks may throw or reject; neither may reach the socket or the process. */
function runHook (request: FastifyRequest, connection: Connection, name: string, hook: () => void | Promise<void>): void {
  const logFailure = (err: unknown): void => {
    request.log.error({ err, clientId: connection.id, hook: name }, 'ws-hub: service hook failed')
  }
  try {
    const result = hook()
    if (result !== undefined) Promise.resolve(result).catch(logFailure)
  } catch (err) {
    logFailure(err)
  }
}
