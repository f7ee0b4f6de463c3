import Fastify from 'fastify'
import wsHub, { type BrokerOption, type RegistryOption, type WsHubOptions } from 'fastify-ws-hub'
import type { SystemOptions, SystemUnderTest } from './system.js'

export interface HubBenchOptions extends SystemOptions {
  /** The hub's `preparedFrames` option (lib/connections/socket-writer.ts); unset: the hub's default. */
  prepared?: boolean
  /** Clients connect with ?batch=1 and receive {"type":"batch"} frames. */
  batch?: boolean
}

/**
 * fastify-ws-hub as users install it (`fastify-ws-hub` resolves to dist/
 * through package.json "exports"), memory backends, heartbeat off, default
 * options otherwise.
 */
export async function startHub (options: HubBenchOptions): Promise<SystemUnderTest> {
  const app = Fastify({ logger: false })
  const limit = options.maxClients + 1_000
  // Every bench client connects from 127.0.0.1 in a burst: the per-IP slot
  // limit is raised and the per-IP handshake rate limit is off.
  const hubOptions: WsHubOptions = { heartbeatIntervalMs: 0, maxConnections: limit, maxConnectionsPerIp: limit, handshakeRateLimit: false, rest: { auth: false } }
  if (options.prepared !== undefined) hubOptions.preparedFrames = options.prepared
  // EXTENSION POINT (cross-instance): a Redis or Kafka broker/registry, passed through as given.
  if (options.hubBroker !== undefined) hubOptions.broker = options.hubBroker as BrokerOption
  if (options.hubRegistry !== undefined) hubOptions.registry = options.hubRegistry as RegistryOption
  await app.register(wsHub, hubOptions)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('hub: no port')
  const hub = app.wsHub
  const onError = (err: unknown): void => { process.stderr.write(`hub: broadcast failed: ${String(err)}\n`) }
  return {
    url: `ws://127.0.0.1:${address.port}/ws${options.batch === true ? '?batch=1' : ''}`,
    count: () => hub.stats().connections,
    broadcast: (payload) => { hub.broadcast(payload).catch(onError) },
    stats: () => app.wsHub.stats(),
    close: () => app.close()
  }
}
