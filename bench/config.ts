import type { CpuReport, MemoryReport } from './control.js'
import { field } from './control.js'
import { isSystemName, type ClientProtocol, type SystemName } from './systems/system.js'

/** Passed to a server process as JSON in BENCH_SERVER. */
export interface ServerConfig {
  system: SystemName
  maxClients: number
  /** EXTENSION POINT (cross-instance): hub `broker` / `registry` options. */
  hubBroker?: unknown
  hubRegistry?: unknown
}

export type Phase = 'connect' | 'memory' | 'latency' | 'burst'

/** Passed to a driver process as JSON in BENCH_DRIVER. */
export interface DriverConfig {
  system: SystemName
  protocol: ClientProtocol
  /** Where the clients connect. */
  url: string
  /** Control port of the server that broadcasts (and reports its CPU). */
  controlPort: number
  /**
   * Control port of the server that holds the clients (count, memory). The
   * same as `controlPort` except in cross-instance runs.
   */
  clientControlPort: number
  phases: Phase[]
  clients: number
  /** Handshakes in flight at once. */
  concurrency: number
  /** Clients opened and closed before the measured ones (JIT, lazy loading). */
  warmupClients: number
  latencySamples: number
  latencyWarmup: number
  /** Idle time between two latency samples. */
  latencyGapMs: number
  /** Broadcasts per throughput run. */
  burstMessages: number
  /** One throughput run per entry: broadcasts the server issues per event-loop turn. */
  perTick: number[]
  /** Longest any phase may take. */
  phaseTimeoutMs: number
}

export interface LatencyResult {
  samplesMs: number[]
  p50Ms: number
  p99Ms: number
  meanMs: number
  maxMs: number
}

export interface BurstResult {
  perTick: number
  messages: number
  deliveries: number
  /** From the trigger to the last delivery, driver clock. */
  ms: number
  deliveriesPerSec: number
  cpu: CpuReport
  cpuUsPerDelivery: number
}

export interface DriverResult {
  connect?: { clients: number, ms: number, perSec: number }
  memory?: { before: MemoryReport, after: MemoryReport, rssPerConnection: number, heapPerConnection: number }
  latency?: LatencyResult
  bursts: BurstResult[]
  /** Measured frames that arrived outside the window expected (should be 0). */
  strays: number
  /** The server's own counters at the end (e.g. the hub's stats()). */
  serverStats?: unknown
}

/** The line a server prints once it listens. */
export const SERVER_READY = 'BENCH_READY '
/** The line a driver prints with its result. */
export const DRIVER_RESULT = 'BENCH_RESULT '

export interface ServerReady {
  url: string
  controlPort: number
}

export function readJsonEnv (name: string): unknown {
  const raw = process.env[name]
  if (raw === undefined) throw new Error(`${name} is not set; this process is started by bench/run`)
  return JSON.parse(raw)
}

export function parseServerConfig (value: unknown): ServerConfig {
  const system = field(value, 'system')
  const maxClients = field(value, 'maxClients')
  if (typeof system !== 'string' || !isSystemName(system)) throw new Error(`BENCH_SERVER: unknown system ${String(system)}`)
  if (typeof maxClients !== 'number' || !(maxClients > 0)) throw new Error('BENCH_SERVER: maxClients must be > 0')
  return { system, maxClients, hubBroker: field(value, 'hubBroker'), hubRegistry: field(value, 'hubRegistry') }
}

export function parseDriverConfig (value: unknown): DriverConfig {
  const system = field(value, 'system')
  if (typeof system !== 'string' || !isSystemName(system)) throw new Error(`BENCH_DRIVER: unknown system ${String(system)}`)
  for (const name of ['controlPort', 'clientControlPort', 'clients', 'concurrency', 'warmupClients', 'latencySamples', 'latencyWarmup', 'latencyGapMs', 'burstMessages', 'phaseTimeoutMs']) {
    if (typeof field(value, name) !== 'number') throw new Error(`BENCH_DRIVER: ${name} must be a number`)
  }
  // Checked field by field above; the orchestrator wrote it from a DriverConfig.
  return value as DriverConfig
}
