import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import websocket from '@fastify/websocket'
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import { WebSocket } from 'ws'
import { normalizeOptions, OptionsError, type WsHubOptions } from './options/hub-options.js'
import { ConnectionManager } from './connections/connection-manager.js'
import { MessageDispatcher } from './dispatch/message-dispatcher.js'
import { ProtocolHandler } from './protocol/protocol-handler.js'
import { Heartbeat } from './connections/heartbeat.js'
import { registerWsRoute } from './http/ws-route.js'
import { Admission, emptyHandshakeCounters, type HandshakeCounters } from './connections/admission.js'
import { Revalidator } from './connections/revalidator.js'
import { Telemetry } from './telemetry.js'
import { registerMetrics } from './http/metrics.js'
import { registerRestRoutes } from './http/rest-routes.js'
import { registerAsyncApiRoute } from './http/asyncapi-route.js'
import type { HealthReport } from './http/rest-schemas.js'
import { createBroker, createRegistry } from './cluster/backends.js'
import { CloseCodes } from './protocol/frames.js'
import type { Broker } from './cluster/transport.js'
import type { Registry } from './cluster/registry.js'

export interface HubStats {
  instanceId: string
  connections: number
  handshakes: HandshakeCounters
  messagesIn: number
  messagesOut: number
  bytesOut: number
  errorsSent: number
  serviceErrors: number
  rateLimited: number
  conflatedDrops: number
  floodCloses: number
  revalidationCloses: number
  slowConsumerCloses: number
  deadSocketsRemoved: number
  heartbeatTerminations: number
  brokerPublishFailures: number
  remoteEnvelopesIn: number
  brokerState: 'none' | 'up' | 'down'
}

/** Hub-wide handles that are neither the manager nor the dispatcher. */
export interface WsHub {
  instanceId: string
  heartbeat: Heartbeat
  broker: Broker | null
  registry: Registry
  stats: () => HubStats
}

declare module 'fastify' {
  interface FastifyInstance {
    connectionManager: ConnectionManager
    messageDispatcher: MessageDispatcher
    wsHub: WsHub
  }
}

const wsHubPlugin: FastifyPluginAsync<WsHubOptions> = async (fastify, rawOptions) => {
  const options = normalizeOptions(rawOptions)
  if (fastify.hasDecorator('websocketServer')) {
    throw new OptionsError('fastify-ws-hub: @fastify/websocket is already registered; fastify-ws-hub registers it itself, so remove the other registration')
  }
  const instanceId = options.instanceId ?? randomUUID()
  const log = fastify.log

  const registry = await createRegistry(options.registry, log)
  const broker = await createBroker(options.broker, log)
  const connections = new ConnectionManager({ instanceId, maxBufferedBytes: options.maxBufferedBytes, registry: registry.value, log, batch: options.batch, preparedFrames: options.preparedFrames })
  const telemetry = new Telemetry(instanceId)
  const dispatcher = new MessageDispatcher({
    instanceId,
    connections,
    registry: registry.value,
    broker: broker.value,
    log,
    conflateMs: options.conflateMs,
    onPublished: (seconds) => telemetry.brokerPublished(seconds)
  })
  const protocol = new ProtocolHandler({
    connections,
    dispatcher,
    service: options.service,
    echo: options.echo,
    telemetry,
    messageRateLimit: options.messageRateLimit,
    maxJsonDepth: options.maxJsonDepth,
    maxTopicsPerConnection: options.maxTopicsPerConnection,
    log
  })
  const heartbeat = new Heartbeat(connections, options.heartbeatInterval)
  const handshakes: HandshakeCounters = emptyHandshakeCounters()
  const admission = new Admission({ options, connections, registry: registry.value, counters: handshakes })
  const revalidator = new Revalidator(connections, options, log)

  await fastify.register(websocket, {
    options: {
      maxPayload: options.maxPayload,
      perMessageDeflate: false,
      // Select our application protocol, never echo another entry: browsers
      // can only carry a token in Sec-WebSocket-Protocol, and it must not
      // come back in the response.
      handleProtocols: (offered: Set<string>) => options.protocols.find((p) => offered.has(p)) ?? false
    },
    errorHandler: (error, _socket, request) => {
      // ws has already closed the socket with the right code (1009, 1007, ...);
      // terminating here would drop that close frame.
      request.log.warn({ err: error }, 'ws-hub: socket error')
    },
    preClose: async () => {
      heartbeat.stop()
      revalidator.stop()
      clearInterval(sweeper)
      dispatcher.stop()
      connections.flushBatches()
      await closeAll(fastify, options.closeTimeout)
    }
  })

  const stats = (): HubStats => ({
    instanceId,
    connections: connections.count,
    handshakes: { ...handshakes },
    messagesIn: protocol.counters.messagesIn,
    messagesOut: connections.counters.messagesOut,
    bytesOut: connections.counters.bytesOut,
    errorsSent: protocol.counters.errorsSent,
    serviceErrors: protocol.counters.serviceErrors,
    rateLimited: protocol.counters.rateLimited,
    conflatedDrops: dispatcher.conflatedDrops,
    floodCloses: protocol.counters.floodCloses,
    revalidationCloses: revalidator.closed,
    slowConsumerCloses: connections.counters.slowConsumerCloses,
    deadSocketsRemoved: connections.counters.deadSocketsRemoved,
    heartbeatTerminations: heartbeat.terminated,
    brokerPublishFailures: dispatcher.counters.brokerPublishFailures,
    remoteEnvelopesIn: dispatcher.counters.remoteEnvelopesIn,
    brokerState: broker.value === null ? 'none' : broker.value.state()
  })

  fastify.decorate('connectionManager', connections)
  fastify.decorate('messageDispatcher', dispatcher)
  fastify.decorate('wsHub', { instanceId, heartbeat, broker: broker.value, registry: registry.value, stats })

  registerWsRoute(fastify, { options, connections, dispatcher, protocol, admission, counters: handshakes, telemetry })
  if (options.rest !== false) {
    const health = (): HealthReport => {
      const state = broker.value === null ? 'none' : broker.value.state()
      return { status: state === 'down' ? 'degraded' : 'ok', instanceId, broker: state, connections: connections.count }
    }
    await registerRestRoutes(fastify, { prefix: options.rest.prefix, disable: options.rest.disable, auth: options.rest.auth, connections, dispatcher, registry: registry.value, health, stats })
    registerAsyncApiRoute(fastify, { prefix: options.rest.prefix, path: options.path, protocols: options.protocols })
  }

  if (options.metrics !== false) {
    await registerMetrics(fastify, {
      path: options.metrics.path,
      prefix: options.metrics.prefix,
      registry: options.metrics.registry,
      auth: options.rest === false ? undefined : options.rest.auth,
      stats,
      telemetry
    })
  }

  // Brokers close after the sockets (those go in preClose), in the reverse
  // order they were opened; what the user passed in is left open.
  // Each step runs even when an earlier one fails (a backend that is down
  // must not keep the process alive); failures are logged, not thrown.
  fastify.addHook('onClose', async () => {
    const steps: Array<[string, () => Promise<void>]> = [
      ['broker close', async () => { if (broker.value !== null && broker.owned) await broker.value.close() }],
      ['registry leave', async () => registry.value.leave(instanceId)],
      ['registry close', async () => { if (registry.owned) await registry.value.close() }]
    ]
    for (const [name, step] of steps) {
      try {
        await step()
      } catch (err) {
        log.error({ err }, `ws-hub: ${name} failed during shutdown`)
      }
    }
  })

  await registry.value.join(instanceId)
  if (broker.value !== null) {
    await broker.value.start(instanceId, (envelope) => dispatcher.receive(envelope))
  }
  heartbeat.start()
  revalidator.start()
  const sweeper = setInterval(() => admission.sweep(Date.now()), SWEEP_INTERVAL_MS).unref()
}

const SWEEP_INTERVAL_MS = 60_000

/**
 * Sends 1001 to every client and waits for their close frames, but never
 * longer than `closeTimeout`: a client that does not answer is terminated
 * so `fastify.close()` cannot hang.
 */
async function closeAll (fastify: FastifyInstance, closeTimeout: number): Promise<void> {
  const server = fastify.websocketServer
  const connections = fastify.connectionManager
  const pending: Array<Promise<void>> = []
  for (const socket of server.clients) {
    if (socket.readyState !== WebSocket.CLOSED) pending.push(new Promise((resolve) => socket.once('close', () => resolve())))
  }
  for (const connection of connections.all()) connections.close(connection, CloseCodes.goingAway, 'server shutting down')
  // Sockets upgraded but not yet registered (a hook still running).
  for (const socket of server.clients) {
    if (socket.readyState === WebSocket.OPEN) socket.close(CloseCodes.goingAway, 'server shutting down')
  }
  if (pending.length > 0) {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, closeTimeout) })
    await Promise.race([Promise.all(pending), timeout])
    clearTimeout(timer)
    for (const socket of server.clients) socket.terminate()
  }
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

export const wsHub = fp(wsHubPlugin, { fastify: '5.x', name: 'fastify-ws-hub' })
export default wsHub

export { normalizeOptions, OptionsError, DEFAULTS } from './options/hub-options.js'
export type { WsHubOptions, NormalizedOptions, BrokerOption, RegistryOption, RestAuth } from './options/hub-options.js'
export { ConnectionManager } from './connections/connection-manager.js'
export { MessageDispatcher, type DeliveryReport } from './dispatch/message-dispatcher.js'
export { Connection, type ConnectionInfo } from './connections/connection.js'
export { HubProtocolError, type HubService, type ServiceContext, type DisconnectInfo } from './protocol/service.js'
export { CloseCodes, ErrorCodes, ServerFrames, BuiltInClientFrames } from './protocol/frames.js'
export type { ServerFrame, ClientFrame, OutgoingFrame } from './protocol/frames.js'
export type { Broker, EnvelopeHandler, BrokerState, PublishOptions } from './cluster/transport.js'
export { MemoryBroker, MemoryBus } from './cluster/memory/memory-transport.js'
export type { Registry, Limits, ReserveResult } from './cluster/registry.js'
export { MemoryRegistry } from './cluster/memory/memory-registry.js'
export type { Envelope, Target } from './cluster/envelope.js'
export { normalizeIp } from './connections/ip.js'
export { redactUrl, redactedRequestSerializer } from './http/redact.js'
export type { Identity, Authenticate, Revalidate, RateLimit, RestRouteName } from './options/hub-options.js'
export { CHANNELS as diagnosticsChannels } from './telemetry.js'
export type { ConnectEvent, DisconnectEvent, MessageEvent } from './telemetry.js'
