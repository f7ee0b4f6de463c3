import type { FastifyInstance } from 'fastify'
import type { Registry as PromRegistry } from 'prom-client'
import type { Telemetry } from '../telemetry.js'
import type { HubStats } from './rest-schemas.js'
import type { RestAuth } from '../options/hub-options.js'
import { authHook } from './rest-auth.js'

export interface MetricsDeps {
  path: string
  prefix: string
  /** A registry of the user's: metrics are added to it, and it is not cleared on close. */
  registry: PromRegistry | undefined
  auth: RestAuth | undefined
  stats: () => HubStats
  telemetry: Telemetry
}

type SourceList = HubStats['sources']

/**
 * Per event source, labelled by its name (bounded: the sources are fixed at
 * register time). The state is a state set: one series per state, 1 for
 * the current one.
 */
function registerSourceMetrics (prom: typeof import('prom-client'), p: string, registers: PromRegistry[], sources: () => SourceList): void {
  const labelled = (kind: 'counter' | 'gauge', name: string, help: string, labelNames: string[], fill: (set: (labels: Record<string, string>, value: number) => void) => void): void => {
    if (kind === 'counter') {
      const metric: import('prom-client').Counter<string> = new prom.Counter({
        name: p + name,
        help,
        labelNames,
        registers,
        collect () {
          metric.reset()
          fill((labels, value) => { if (value > 0) metric.inc(labels, value) })
        }
      })
      return
    }
    const metric: import('prom-client').Gauge<string> = new prom.Gauge({
      name: p + name,
      help,
      labelNames,
      registers,
      collect () {
        metric.reset()
        fill((labels, value) => { metric.set(labels, value) })
      }
    })
  }
  labelled('counter', 'source_records_total', 'Records an event source handed to the hub, by outcome', ['source', 'outcome'], (set) => {
    for (const s of sources()) {
      set({ source: s.name, outcome: 'published' }, s.published)
      set({ source: s.name, outcome: 'filtered' }, s.filtered)
      set({ source: s.name, outcome: 'dead_lettered' }, s.deadLettered)
      for (const [reason, count] of Object.entries(s.skipped)) set({ source: s.name, outcome: `skipped_${reason}` }, count)
    }
  })
  labelled('gauge', 'source_lag', 'Records waiting in an event source\'s service (-1: unknown)', ['source'], (set) => {
    for (const s of sources()) set({ source: s.name }, s.lag ?? -1)
  })
  labelled('gauge', 'source_state', 'An event source\'s state: 1 for its current one of up, paused, down', ['source', 'state'], (set) => {
    for (const s of sources()) for (const state of ['up', 'paused', 'down']) set({ source: s.name, state }, s.state === state ? 1 : 0)
  })
  labelled('gauge', 'source_active', '1 while this instance reads the source (0: another holds an ordered source\'s lease)', ['source'], (set) => {
    for (const s of sources()) set({ source: s.name }, s.active ? 1 : 0)
  })
}

/**
 * Prometheus metrics. Values are read from the hub's own counters at scrape
 * time (`collect`), so the send path pays nothing for them. Labels are
 * bounded: close codes and message types are folded into known values, and
 * there is never a client id or IP label.
 */
export async function registerMetrics (fastify: FastifyInstance, deps: MetricsDeps): Promise<PromRegistry> {
  const prom = await import('prom-client')
  const registry = deps.registry ?? new prom.Registry()
  const p = deps.prefix
  const { stats, telemetry } = deps
  const registers = [registry]

  // Counters built from absolute values: reset, then set, at each scrape.
  const counter = (name: string, help: string, value: () => number): void => {
    const metric: import('prom-client').Counter = new prom.Counter({
      name: p + name,
      help,
      registers,
      collect () { metric.reset(); metric.inc(value()) }
    })
  }
  const labelledCounter = (name: string, help: string, label: string, values: () => Iterable<[string, number]>): void => {
    const metric: import('prom-client').Counter<string> = new prom.Counter({
      name: p + name,
      help,
      labelNames: [label],
      registers,
      collect () {
        metric.reset()
        for (const [key, count] of values()) metric.inc({ [label]: key }, count)
      }
    })
  }
  const gauge = (name: string, help: string, value: () => number): void => {
    const metric: import('prom-client').Gauge = new prom.Gauge({
      name: p + name,
      help,
      registers,
      collect () { metric.set(value()) }
    })
  }

  gauge('connections', 'Live WebSocket connections on this instance', () => stats().connections)
  counter('connections_opened_total', 'Connections opened', () => telemetry.opened.total)
  labelledCounter('connections_closed_total', 'Connections closed, by close code', 'code', () => telemetry.closedByCode)
  labelledCounter('handshakes_rejected_total', 'Handshakes refused before the upgrade, by reason', 'reason', () => {
    const h = stats().handshakes
    return Object.entries({
      origin: h.rejectedOrigin,
      handshake_rate: h.rejectedHandshakeRate,
      ip_limit: h.rejectedIpLimit,
      total_limit: h.rejectedTotalLimit,
      unauthenticated: h.rejectedUnauthenticated,
      user_limit: h.rejectedUserLimit,
      registry_unavailable: h.rejectedRegistryDown,
      aborted: h.abortedBeforeUpgrade
    })
  })
  labelledCounter('messages_in_total', 'Client frames received, by type (custom types folded)', 'type', () => telemetry.messagesInByType)
  counter('messages_out_total', 'Frames written to sockets', () => stats().messagesOut)
  counter('bytes_out_total', 'Bytes written to sockets', () => stats().bytesOut)
  labelledCounter('messages_dropped_total', 'Messages not delivered, by reason', 'reason', () => {
    const s = stats()
    return Object.entries({ rate_limited: s.rateLimited, broker_failure: s.brokerPublishFailures, conflated: s.conflatedDrops, stale: s.staleEnvelopesDropped })
  })
  counter('slow_consumer_closes_total', 'Clients closed with 4008 for not reading', () => stats().slowConsumerCloses)
  counter('heartbeat_terminations_total', 'Clients terminated for missing a pong', () => stats().heartbeatTerminations)
  counter('errors_sent_total', 'Error frames sent to clients', () => stats().errorsSent)
  labelledCounter('protocol_violations_total', 'Client input that broke the protocol, by reason', 'reason', () => telemetry.violationsByReason)
  gauge('broker_up', '1 when the broker is reachable (or none is used), 0 while it is down', () => stats().brokerState === 'down' ? 0 : 1)
  gauge('registry_up', '1 when the registry (limits and directory) answers, 0 while it is down or hangs', () => stats().registryState === 'down' ? 0 : 1)
  const publishSeconds = new prom.Histogram({
    name: p + 'broker_publish_seconds',
    help: 'Time for the broker to accept a cross-instance publish',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers
  })
  telemetry.observePublishes((seconds) => publishSeconds.observe(seconds))
  registerSourceMetrics(prom, p, registers, () => stats().sources)

  await fastify.register(async (scope) => {
    if (deps.auth !== undefined) scope.addHook('onRequest', authHook(deps.auth))
    scope.get(deps.path, { schema: { hide: true } as object }, async (_request, reply) => {
      reply.header('content-type', registry.contentType)
      return registry.metrics()
    })
  })
  return registry
}
