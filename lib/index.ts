import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { normalizeOptions, type WsHubOptions } from './options/hub-options.js'
import { OptionsError } from './errors.js'
import { ConnectionManager } from './connections/connection-manager.js'
import { Heartbeat } from './connections/heartbeat.js'
import { Admission, emptyHandshakeCounters, type HandshakeCounters } from './connections/admission.js'
import { Revalidator } from './connections/revalidator.js'
import { MessageDispatcher } from './dispatch/message-dispatcher.js'
import { TopicInterest } from './dispatch/topic-interest.js'
import { TopicPolicy } from './topics/topic-policy.js'
import { Authorizer } from './topics/authorizer.js'
import { Subscriptions } from './topics/subscriptions.js'
import { PresenceTracker } from './presence/presence-tracker.js'
import { MemoryPresence } from './cluster/memory/memory-presence.js'
import { FailureLog } from './dispatch/failure-log.js'
import { ProtocolHandler } from './protocol/protocol-handler.js'
import { Telemetry } from './telemetry.js'
import { registerWsRoute } from './http/ws-route.js'
import { registerMetrics } from './http/metrics.js'
import { registerRestRoutes } from './http/rest-routes.js'
import { registerAsyncApiRoute } from './http/asyncapi-route.js'
import type { HealthReport, HubStats } from './http/rest-schemas.js'
import { registerWebsocket } from './http/websocket-server.js'
import { guardUpgrades } from './http/upgrade-guard.js'
import { createClusterState, createHistory, createTransport } from './cluster/backends.js'
import { TopicHistory } from './history/topic-history.js'
import { WsHub } from './hub.js'
import { attachInternals } from './internals.js'
import { closeAllSockets } from './connections/close-all.js'
import { pickEvicted } from './cluster/limiter.js'
import { CloseCodes } from './protocol/frames.js'
import { Sources } from './sources/sources.js'
import { hubPublisher } from './sources/hub-publisher.js'
import { RegistryLeases } from './sources/leases/registry-leases.js'

declare module 'fastify' {
  interface FastifyInstance {
    wsHub: WsHub
  }
}

const SWEEP_INTERVAL_MS = 60_000

const wsHubPlugin: FastifyPluginAsync<WsHubOptions> = async (fastify, rawOptions) => {
  const options = normalizeOptions(rawOptions)
  if (options.rest !== false && options.rest.auth === undefined) {
    throw new OptionsError('fastify-ws-hub: the REST push API can broadcast to and disconnect every client: set rest.auth to a function that checks each request, or rest: { auth: false } to run it open on purpose')
  }
  const instanceId = options.instanceId ?? randomUUID()
  const log = fastify.log

  // Everything the close hooks touch is built here, before the first step
  // that can fail, so fastify.close() works after any failed start.
  const cluster = await createClusterState(options.registry, log)
  const transport = await createTransport(options.broker, log)
  const historyStore = await createHistory(options.history, options.registry, log)
  const leases = await RegistryLeases.create(options.registry, instanceId, log)
  const loadedSources = await Sources.load(options.sources, { instanceId, log, lease: leases.factory })
  const { limiter, directory } = cluster.value
  const directoryFailures = new FailureLog(log, 'ws-hub: directory update failed; lookups of this instance\'s clients from other instances may miss until it answers')
  const interest = new TopicInterest(transport.value, new FailureLog(log, 'ws-hub: topic subscription on the transport failed; restored when it reconnects'))
  const connections = new ConnectionManager({
    instanceId,
    maxBufferedBytes: options.maxBufferedBytes,
    log,
    batch: options.batch,
    preparedFrames: options.preparedFrames,
    observer: {
      added: (connection) => {
        directory.add({ id: connection.id, ip: connection.ip, userId: connection.userId, connectedAt: new Date(connection.connectedAt).toISOString(), instanceId })
          .catch((err: unknown) => directoryFailures.record(err, { clientId: connection.id, action: 'add' }))
      },
      removed: (connection) => {
        directory.remove(connection.id).catch((err: unknown) => directoryFailures.record(err, { clientId: connection.id, action: 'remove' }))
      },
      // Declared below; only called once clients subscribe, after start.
      topicOpened: (topic) => { interest.opened(topic); history.opened(topic) },
      topicClosed: (topic) => { interest.closed(topic); history.closed(topic) },
      subscribed: (connection, topic) => { presence.subscribed(connection, topic); history.joined(connection, topic) },
      unsubscribed: (connection, topic) => { presence.unsubscribed(connection, topic); history.left(connection, topic) }
    }
  })
  const telemetry = new Telemetry(instanceId, log)
  const policy = new TopicPolicy(options.topics)
  const history = new TopicHistory({
    history: historyStore.value,
    retentionOf: (topic) => policy.rulesFor(topic)?.history || null,
    subscribers: (topic) => connections.subscribers(topic),
    write: (connection, data) => connections.write(connection, data),
    ready: async (topic) => { await interest.ready(topic) },
    maxRecovery: options.maxRecovery,
    idempotencyWindowMs: options.idempotencyWindowMs,
    log
  })
  const subscriptions = new Subscriptions({ connections, interest, policy, maxTopicsPerConnection: options.maxTopicsPerConnection, log, history })
  const dispatcher = new MessageDispatcher({
    instanceId,
    connections,
    directory,
    transport: transport.value,
    log,
    conflateMs: options.conflateMs,
    queryTimeoutMs: options.queryTimeoutMs,
    maxEnvelopeAgeMs: options.maxEnvelopeAgeMs,
    subscriptions,
    history,
    onPublished: (seconds) => telemetry.brokerPublished(seconds)
  })
  // A custom registry without presence: each instance keeps its own members.
  const presence = new PresenceTracker({
    presence: cluster.value.presence ?? new MemoryPresence(),
    rulesFor: (topic) => policy.rulesFor(topic),
    send: (topic, frame) => { dispatcher.dispatch({ kind: 'topic', topic }, frame) },
    log
  })
  const sources = new Sources(loadedSources, {
    log,
    publisher: hubPublisher({
      dispatcher,
      policy,
      maxJsonDepth: options.maxJsonDepth,
      // Reading on while a record could reach only this instance's clients
      // would deliver it here again on every retry.
      accepting: () => transportState() !== 'down' && registryState() !== 'down'
    })
  })
  const handshakes: HandshakeCounters = emptyHandshakeCounters()
  const heartbeat = new Heartbeat(connections, options.heartbeatIntervalMs)
  const revalidator = new Revalidator(connections, options, log)
  const transportState = (): HubStats['brokerState'] => transport.value === null ? 'none' : transport.value.state()
  // A custom registry without `state` is taken as up: the hub cannot tell.
  const registryState = (): HubStats['registryState'] => cluster.value.state?.() ?? 'up'
  let protocol: ProtocolHandler | null = null
  const stats = (): HubStats => ({
    instanceId,
    connections: connections.count,
    handshakes: { ...handshakes },
    messagesIn: protocol?.counters.messagesIn ?? 0,
    messagesOut: connections.counters.messagesOut,
    bytesOut: connections.counters.bytesOut,
    errorsSent: protocol?.counters.errorsSent ?? 0,
    serviceErrors: protocol?.counters.serviceErrors ?? 0,
    rateLimited: protocol?.counters.rateLimited ?? 0,
    conflatedDrops: dispatcher.conflatedDrops,
    floodCloses: protocol?.counters.floodCloses ?? 0,
    revalidationCloses: revalidator.closed,
    slowConsumerCloses: connections.counters.slowConsumerCloses,
    deadSocketsRemoved: connections.counters.deadSocketsRemoved,
    heartbeatTerminations: heartbeat.terminated,
    brokerPublishFailures: dispatcher.counters.brokerPublishFailures,
    remoteEnvelopesIn: dispatcher.counters.remoteEnvelopesIn,
    protocolViolations: telemetry.protocolViolations,
    staleEnvelopesDropped: dispatcher.counters.staleEnvelopesDropped,
    brokerState: transportState(),
    registryState: registryState(),
    sources: sources.statuses()
  })
  const hub = new WsHub({ instanceId, connections, dispatcher, directory, stats, maxJsonDepth: options.maxJsonDepth, policy, subscriptions, presence, history })
  protocol = new ProtocolHandler({
    connections,
    dispatcher,
    subscriptions,
    presence,
    policy,
    authorizer: new Authorizer(options.authorize, instanceId, log),
    clientBroadcast: options.clientBroadcast,
    clientDirect: options.clientDirect,
    hub,
    service: options.service,
    echo: options.echo,
    telemetry,
    messageRateLimit: options.messageRateLimit,
    maxJsonDepth: options.maxJsonDepth,
    maxTopicsPerConnection: options.maxTopicsPerConnection,
    log,
    history
  })
  const admission = new Admission({ options, limiter, counters: handshakes, failures: directoryFailures, log })
  let sweeper: NodeJS.Timeout | null = null
  let joined = false

  const closeSockets = async (): Promise<void> => {
    heartbeat.stop()
    revalidator.stop()
    if (sweeper !== null) clearInterval(sweeper)
    dispatcher.stop()
    connections.flushBatches()
    await closeAllSockets(fastify.websocketServer, connections, options.closeTimeoutMs)
  }
  // Sources stop first, before any socket closes: what they delivered
  // still reaches clients, and they commit it.
  fastify.addHook('preClose', async () => {
    try {
      await sources.close()
    } catch (err) {
      log.error({ err }, 'ws-hub: an event source failed to close cleanly; what it did not commit is delivered again')
    }
  })
  await registerWebsocket(fastify, options, closeSockets, telemetry)
  guardUpgrades(fastify)

  fastify.decorate('wsHub', hub)
  attachInternals(hub, { connections, dispatcher, heartbeat, cluster: cluster.value, transport: transport.value })

  registerWsRoute(fastify, { options, connections, dispatcher, protocol, subscriptions, admission, counters: handshakes, telemetry, hub, route: options.route })
  const restAuth = options.rest === false ? false : options.rest.auth ?? false
  if (options.rest !== false) {
    const health = (): HealthReport => {
      const broker = transportState()
      const registry = registryState()
      const status = broker === 'down' || registry === 'down' || sources.anyDown() ? 'degraded' : 'ok'
      const states = sources.statuses().map(({ name, type, state }) => ({ name, type, state }))
      return { status, instanceId, broker, registry, connections: connections.count, sources: states }
    }
    await registerRestRoutes(fastify, { prefix: options.rest.prefix, disable: options.rest.disable, auth: restAuth, hub, health, maxJsonDepth: options.maxJsonDepth })
    registerAsyncApiRoute(fastify, { prefix: options.rest.prefix, path: options.path, protocols: options.protocols, topics: options.topics })
  }
  if (options.metrics !== false) {
    await registerMetrics(fastify, {
      path: options.metrics.path,
      prefix: options.metrics.prefix,
      registry: options.metrics.registry,
      auth: restAuth === false ? undefined : restAuth,
      stats,
      telemetry
    })
  }

  // The transport, history and cluster state close after the sockets (those
  // go in preClose, and take every topic's ordering state with them), in
  // the reverse order they were opened: nothing arrives to be ordered once
  // the transport is closed, so the store goes next. What the user passed
  // in is left open. Each step runs even when an earlier one fails (a
  // backend that is down must not keep the process alive); failures are
  // logged, not thrown.
  fastify.addHook('onClose', async () => {
    const steps: Array<[string, () => Promise<void>]> = [
      // Opened last, and already released by the sources in preClose.
      ['source leases close', async () => { await leases.close() }],
      ['transport close', async () => { if (transport.value !== null && transport.owned) await transport.value.close() }],
      ['history close', async () => { if (historyStore.owned) await historyStore.value.close() }],
      ['registry leave', async () => { if (joined) await directory.leave(instanceId) }],
      ['cluster state close', async () => { if (cluster.owned) await cluster.value.close() }]
    ]
    for (const [name, step] of steps) {
      try {
        await step()
      } catch (err) {
        log.error({ err }, `ws-hub: ${name} failed during shutdown`)
      }
    }
  })

  // Fencing: after a lapsed registry lease this instance may hold more
  // connections than the limits now allow; the newest ones go (the longest
  // sessions keep running), with 1013 so clients retry later.
  cluster.value.onEvict?.((eviction) => {
    const evicted = pickEvicted(eviction, [...connections.all()].reverse())
    for (const connection of evicted) connections.close(connection, CloseCodes.tryAgainLater, 'over the connection limits after a registry lease lapsed')
    log.warn({ instanceId, closed: evicted.length }, 'ws-hub: closed connections over the limits after this instance\'s registry lease lapsed')
  })
  joined = true
  await directory.join(instanceId)
  if (transport.value !== null) {
    await transport.value.start(instanceId, (envelope) => dispatcher.receive(envelope), { maxEnvelopeAgeMs: options.maxEnvelopeAgeMs })
  }
  heartbeat.start()
  revalidator.start()
  sweeper = setInterval(() => admission.sweep(Date.now()), SWEEP_INTERVAL_MS).unref()
  // Sources start once the app is listening-ready, not while it registers.
  if (sources.size > 0) fastify.addHook('onReady', async () => { sources.start() })
}

export const wsHub = fp(wsHubPlugin, { fastify: '5.x', name: 'fastify-ws-hub' })
export default wsHub

export { WsHub, type HistoryResult, type PublishedFrame, type HubEvents, type ListPage, type ConnectionPage, type CloseTarget, type CloseOptions, type DisconnectDetails, type SubscriptionTarget } from './hub.js'
export { normalizeOptions, DEFAULTS } from './options/hub-options.js'
export type {
  WsHubOptions, NormalizedOptions, RestAuth, Identity, Authenticate, Revalidate, RateLimit, RestRouteName,
  Authorize, AuthorizeRequest, TopicsOption, TopicRulesOption, TopicRules
} from './options/hub-options.js'
export { TopicPolicy, type TopicRuleView, type Refusal } from './topics/topic-policy.js'
export type { BrokerOption, RegistryOption } from './options/backend-options.js'
export {
  HubError, HubErrorCodes, OptionsError, MissingPackageError, TransportError, ClusterStateError, EnvelopeError,
  QueryTimeoutError, HubClosedError, InvalidArgumentError, InvalidMessageError, PresenceOffError, HistoryOffError, SourceError, LeaseError, HubProtocolError, type ErrorCode
} from './errors.js'
export type { ConnectionInfo } from './connections/connection.js'
export type { DeliveryReport, PublishCallOptions } from './dispatch/message-dispatcher.js'
export type { HubService, ServiceContext, DisconnectInfo } from './protocol/service.js'
export { CloseCodes, ErrorCodes, ServerFrames, BuiltInClientFrames } from './protocol/frames.js'
export type { ServerFrame, ClientFrame, OutgoingFrame } from './protocol/frames.js'
export type { HubStats } from './http/rest-schemas.js'
export type { WsRouteOptions } from './options/route-options.js'
export type { Transport, EnvelopeHandler, TransportState, TransportContext } from './cluster/transport.js'
export type { Limiter, SlotLimits, ReserveResult } from './cluster/limiter.js'
export type { Directory, DirectoryEntry, DirectoryPage, Page } from './cluster/directory.js'
export type { ClusterState } from './cluster/cluster-state.js'
export type { History, StreamPosition, StoredPublication, HistoryRetention, AppendRequest, AppendResult, ReadResult } from './cluster/history.js'
export type { Presence, PresenceMember, PresencePage, PresenceQuery, PresenceDeparture, DepartureHandler } from './cluster/presence.js'
export { MAX_PRESENCE_INFO_BYTES } from './presence/presence-tracker.js'
export type { Envelope, DeliverEnvelope, CloseEnvelope, QueryEnvelope, ReplyEnvelope, SubscriptionEnvelope, Target, RemoteConnection } from './cluster/envelope.js'
export { MemoryTransport, MemoryBus } from './cluster/memory/memory-transport.js'
export { normalizeIp } from './connections/ip.js'
export { bearerToken } from './http/bearer-token.js'
export { redactUrl, redactedRequestSerializer } from './http/redact.js'
export { CHANNELS as diagnosticsChannels } from './telemetry.js'
export type { ConnectEvent, DisconnectEvent, MessageEvent } from './telemetry.js'
export type { SourceOption, KafkaSourceOptions, MqttSourceOptions, RedisStreamSourceOptions, PostgresOutboxSourceOptions, CustomSourceOptions } from './options/hub-options.js'
export {
  BAD_RECORD_REASONS, type BadRecordReason, type SourceConsumer, type SourceSink, type SourceRecord, type SourceContext,
  type SourceTarget, type MapResult, type SourceMap, type SourceState, type SourceStatus
} from './sources/source.js'
export type { KafkaSourceRecord, MqttSourceRecord, StreamEntry, OutboxRow } from './sources/records.js'
export type { Lease, LeaseFactory } from './sources/leases/lease.js'
export { outboxDdl } from './sources/postgres-outbox/outbox-ddl.js'
