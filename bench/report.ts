import type { DriverResult } from './config.js'
import { BASELINE, SYSTEMS, type SystemName } from './systems/system.js'

export const METRIC_KEYS = [
  'connectionsPerSec',
  'rssBytesPerConnection',
  'heapBytesPerConnection',
  'latencyP50Ms',
  'latencyP99Ms',
  'deliveriesPerSec',
  'cpuUsPerDelivery',
  'deliveriesPerSecTick10',
  'cpuUsPerDeliveryTick10'
] as const
export type MetricKey = typeof METRIC_KEYS[number]
export type Metrics = Record<MetricKey, number>

interface MetricInfo {
  label: string
  better: 'higher' | 'lower'
  /** Multiplier from the stored unit to the printed one. */
  scale: number
}

export const METRIC_INFO: Record<MetricKey, MetricInfo> = {
  connectionsPerSec: { label: 'connections accepted /s', better: 'higher', scale: 1 },
  rssBytesPerConnection: { label: 'RSS per idle connection KiB', better: 'lower', scale: 1 / 1024 },
  heapBytesPerConnection: { label: 'heap per idle connection KiB', better: 'lower', scale: 1 / 1024 },
  latencyP50Ms: { label: 'broadcast latency p50 ms', better: 'lower', scale: 1 },
  latencyP99Ms: { label: 'broadcast latency p99 ms', better: 'lower', scale: 1 },
  deliveriesPerSec: { label: 'deliveries /s (1 per tick)', better: 'higher', scale: 1 },
  cpuUsPerDelivery: { label: 'server CPU µs/delivery (1/tick)', better: 'lower', scale: 1 },
  deliveriesPerSecTick10: { label: 'deliveries /s (10 per tick)', better: 'higher', scale: 1 },
  cpuUsPerDeliveryTick10: { label: 'server CPU µs/delivery (10/tick)', better: 'lower', scale: 1 }
}

/** One system at one client count. */
export interface RunRecord {
  system: SystemName
  label: string
  clients: number
  ok: boolean
  error?: string
  seconds: number
  metrics?: Metrics
  raw?: DriverResult
}

/** The figures of the table, from what the driver measured; NaN where a phase is missing. */
export function metricsOf (result: DriverResult): Metrics {
  const burst = (perTick: number) => result.bursts.find((b) => b.perTick === perTick)
  return {
    connectionsPerSec: result.connect?.perSec ?? Number.NaN,
    rssBytesPerConnection: result.memory?.rssPerConnection ?? Number.NaN,
    heapBytesPerConnection: result.memory?.heapPerConnection ?? Number.NaN,
    latencyP50Ms: result.latency?.p50Ms ?? Number.NaN,
    latencyP99Ms: result.latency?.p99Ms ?? Number.NaN,
    deliveriesPerSec: burst(1)?.deliveriesPerSec ?? Number.NaN,
    cpuUsPerDelivery: burst(1)?.cpuUsPerDelivery ?? Number.NaN,
    deliveriesPerSecTick10: burst(10)?.deliveriesPerSec ?? Number.NaN,
    cpuUsPerDeliveryTick10: burst(10)?.cpuUsPerDelivery ?? Number.NaN
  }
}

/** value / baseline value, for the same client count. */
export function ratio (runs: RunRecord[], run: RunRecord, key: MetricKey): number {
  const base = runs.find((r) => r.system === BASELINE && r.clients === run.clients)
  const value = run.metrics?.[key]
  const baseValue = base?.metrics?.[key]
  if (value === undefined || baseValue === undefined || baseValue === 0) return Number.NaN
  return value / baseValue
}

/** One plain-text table: a row per (clients, metric), a column per system, each cell "value (ratio×)". */
export function formatTable (runs: RunRecord[], systems: SystemName[], clientCounts: number[]): string {
  const header = ['metric', 'clients', ...systems.map((s) => SYSTEMS[s].label)]
  const rows: string[][] = []
  for (const clients of clientCounts) {
    for (const key of METRIC_KEYS) {
      const info = METRIC_INFO[key]
      const row = [`${info.label} (${info.better === 'higher' ? '↑' : '↓'})`, String(clients)]
      for (const system of systems) {
        const run = runs.find((r) => r.system === system && r.clients === clients)
        if (run === undefined || !run.ok || run.metrics === undefined) {
          row.push('failed')
          continue
        }
        const value = formatNumber(run.metrics[key] * info.scale)
        const r = ratio(runs, run, key)
        row.push(system === BASELINE || Number.isNaN(r) ? value : `${value} (${r.toFixed(2)}x)`)
      }
      rows.push(row)
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((cell, i) => i < 2 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)).join('  ').trimEnd()
  const rule = widths.map((w) => '-'.repeat(w)).join('  ')
  const out = [line(header), rule]
  let previous = ''
  for (const row of rows) {
    if (previous !== '' && row[1] !== previous) out.push(rule)
    previous = row[1] ?? ''
    out.push(line(row))
  }
  return out.join('\n')
}

export function formatNumber (value: number): string {
  if (!Number.isFinite(value)) return String(value)
  const abs = Math.abs(value)
  if (abs >= 100) return Math.round(value).toLocaleString('en-US')
  if (abs >= 10) return value.toFixed(1)
  if (abs >= 1) return value.toFixed(2)
  return value.toPrecision(2)
}
