import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, loadavg, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { DRIVER_RESULT, SERVER_READY, type DriverConfig, type DriverResult, type Phase, type ServerConfig, type ServerReady } from './config.js'
import { field } from './control.js'
import { crossInstanceScenarios, type CrossInstanceScenario } from './cross-instance.js'
import { PAYLOAD_BYTES } from './payload.js'
import { formatNumber, formatTable, METRIC_KEYS, metricsOf, type RunRecord } from './report.js'
import { ALL_SYSTEM_NAMES, BASELINE, isSystemName, SYSTEM_NAMES, SYSTEMS, type SystemName } from './systems/system.js'

/*
 * npm run bench [-- --quick] [-- --clients 1000,5000 --systems hub,ws ...]
 *
 * For each client count and each system: a fresh server process
 * (server.js, --expose-gc) and a fresh load-driver process (driver.js).
 * Prints one table, writes bench/results/<timestamp>.json.
 */

const USAGE = `usage: node .build/bench/run.js [options]
  --quick                a smoke run: 300 clients, fewer samples (well under a minute); no sources run
  --sources              run the event sources' end-to-end latency (bench/sources.ts) even with --quick
  --skip-sources         leave it out of a full run
  --clients <list>       client counts, e.g. 1000,5000,10000 (env BENCH_CLIENTS)
  --systems <list>       any of ${ALL_SYSTEM_NAMES.join(',')} (env BENCH_SYSTEMS)
  --concurrency <n>      handshakes in flight while connecting (default 200)
  --samples <n>          latency samples, one broadcast at a time (default 30)
  --deliveries <n>       deliveries per throughput run, divided by the client count (default 300000; 30000 with --quick)
  --phase-timeout <ms>   longest one phase may take (default 120000)
  --out <file>           where to write the JSON (env BENCH_OUT; default bench/results/<timestamp>.json)
  --verbose              show the servers' and drivers' progress
cross-instance scenarios: see bench/cross-instance.ts (env BENCH_CROSS_INSTANCE)`

interface BenchConfig {
  mode: 'full' | 'quick'
  /** Also run bench/sources.ts (event sources, end to end). */
  sources: boolean
  clients: number[]
  systems: SystemName[]
  concurrency: number
  latencySamples: number
  latencyWarmup: number
  latencyGapMs: number
  deliveries: number
  perTick: number[]
  phaseTimeoutMs: number
  out: string
  verbose: boolean
}

const here = dirname(fileURLToPath(import.meta.url))
const root = dirname(createRequire(import.meta.url).resolve('fastify-ws-hub/package.json'))
const children = new Set<ChildProcess>()

function readConfig (): BenchConfig | null {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      clients: { type: 'string' },
      systems: { type: 'string' },
      concurrency: { type: 'string' },
      samples: { type: 'string' },
      deliveries: { type: 'string' },
      'phase-timeout': { type: 'string' },
      out: { type: 'string' },
      verbose: { type: 'boolean', default: false },
      sources: { type: 'boolean' },
      'skip-sources': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false }
    },
    strict: true
  })
  if (values.help) return null
  const quick = values.quick
  const clients = list(values.clients ?? process.env.BENCH_CLIENTS, quick ? '300' : '1000,5000,10000').map((s) => positiveInt(s, 'clients'))
  const systems = list(values.systems ?? process.env.BENCH_SYSTEMS, SYSTEM_NAMES.join(',')).map((s) => {
    if (!isSystemName(s)) throw new Error(`unknown system "${s}"; known: ${ALL_SYSTEM_NAMES.join(', ')}`)
    return s
  })
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  return {
    mode: quick ? 'quick' : 'full',
    // The sources' latency run needs their services and about half a minute: on in a full run.
    sources: values['skip-sources'] ? false : values.sources ?? !quick,
    clients,
    systems,
    concurrency: positiveInt(values.concurrency ?? '200', 'concurrency'),
    latencySamples: positiveInt(values.samples ?? (quick ? '20' : '30'), 'samples'),
    latencyWarmup: quick ? 3 : 5,
    latencyGapMs: 10,
    deliveries: positiveInt(values.deliveries ?? (quick ? '30000' : '300000'), 'deliveries'),
    perTick: [1, 10],
    phaseTimeoutMs: positiveInt(values['phase-timeout'] ?? (quick ? '30000' : '120000'), 'phase-timeout'),
    out: resolve(values.out ?? process.env.BENCH_OUT ?? join(root, 'bench', 'results', `${stamp}.json`)),
    verbose: values.verbose
  }
}

async function main (): Promise<number> {
  const config = readConfig()
  if (config === null) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  if (!existsSync(join(root, 'dist', 'index.js'))) throw new Error('dist/index.js is missing: run npm run build first')
  const fdLimit = fileLimitFor(Math.max(...config.clients))
  const startedAt = new Date()
  const load = loadavg()
  const runs: RunRecord[] = []
  const log = (message: string): void => { process.stderr.write(`[bench] ${message}\n`) }
  log(`${config.mode} run: ${config.clients.join(', ')} clients; ${config.systems.join(', ')}; results -> ${config.out}`)

  for (const clients of config.clients) {
    const burstMessages = Math.min(1_000, Math.max(10, Math.round(config.deliveries / clients)))
    for (const system of config.systems) {
      log(`${SYSTEMS[system].label}, ${clients} clients ...`)
      const record = await measure(config, system, clients, burstMessages, fdLimit)
      runs.push(record)
      log(record.ok ? `  done in ${record.seconds.toFixed(1)} s` : `  FAILED: ${record.error ?? ''}`)
    }
  }

  const crossInstance = []
  for (const scenario of crossInstanceScenarios(process.env.BENCH_CROSS_INSTANCE)) {
    for (const clients of config.clients) {
      log(`cross-instance ${scenario.name}, ${clients} clients ...`)
      crossInstance.push(await runCrossInstance(config, scenario, clients, fdLimit))
    }
  }

  const report = {
    version: 1,
    mode: config.mode,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      totalMemoryBytes: totalmem(),
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      loadavgAtStart: load,
      loadavgAtEnd: loadavg(),
      versions: Object.fromEntries(['ws', 'fastify', '@fastify/websocket', 'socket.io'].map((name) => [name, packageVersion(name)]))
    },
    config: {
      ...config,
      payloadBytes: PAYLOAD_BYTES,
      perMessageDeflate: false,
      hubLimits: 'maxConnections and maxConnectionsPerIp raised to clients + 1000, handshakeRateLimit off (every client is 127.0.0.1)',
      heartbeats: 'hub heartbeatInterval 0; socket.io pingInterval 10 min (the driver answers pings)'
    },
    baseline: BASELINE,
    systems: Object.fromEntries(config.systems.map((s) => [s, SYSTEMS[s]])),
    metrics: METRIC_KEYS,
    runs,
    // EXTENSION POINT: cross-instance latency, see bench/cross-instance.ts.
    crossInstance
  }
  mkdirSync(dirname(config.out), { recursive: true })
  writeFileSync(config.out, JSON.stringify(report, null, 2) + '\n')

  process.stdout.write(`\nfastify-ws-hub bench (${config.mode}): ${PAYLOAD_BYTES}-byte JSON payloads, permessage-deflate off, loopback; ` +
    `ratios vs ${SYSTEMS[BASELINE].label}; ↑ higher is better, ↓ lower is better\n\n`)
  process.stdout.write(formatTable(runs, config.systems, config.clients) + '\n')
  if (crossInstance.length > 0) {
    process.stdout.write('\ncross-instance broadcast latency (trigger on instance A, clients on instance B)\n')
    for (const run of crossInstance) {
      // Added latency: the same broadcast on one hub, same client count, as the baseline.
      const local = runs.find((r) => r.system === 'hub' && r.clients === run.clients && r.ok)?.metrics
      const added = run.ok && local !== undefined
        ? `; added vs one hub: p50 +${formatNumber(run.p50Ms - local.latencyP50Ms)} ms, p99 +${formatNumber(run.p99Ms - local.latencyP99Ms)} ms`
        : ''
      process.stdout.write(`  ${run.scenario}, ${run.clients} clients: ` +
        (run.ok ? `p50 ${formatNumber(run.p50Ms)} ms, p99 ${formatNumber(run.p99Ms)} ms${added}` : `FAILED: ${run.error}`) + '\n')
    }
  }
  process.stdout.write(`\nload average at start ${load.map((x) => x.toFixed(2)).join(' ')}, at end ${loadavg().map((x) => x.toFixed(2)).join(' ')} ` +
    `(${cpus().length} CPUs); JSON: ${config.out}\n`)
  let failed = runs.filter((r) => !r.ok).length + crossInstance.filter((r) => !r.ok).length
  if (config.sources) {
    // Event sources, end to end: its own process, services it cannot reach skipped (bench/sources.ts).
    process.stdout.write('\n')
    const child = spawn(process.execPath, [join(here, 'sources.js')], { stdio: 'inherit', env: process.env })
    children.add(child)
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    children.delete(child)
    if (code !== 0) failed++
  }
  if (failed > 0) process.stderr.write(`[bench] ${failed} run(s) failed\n`)
  return failed > 0 ? 1 : 0
}

/** One system at one client count: its own server process and driver process. */
async function measure (config: BenchConfig, system: SystemName, clients: number, burstMessages: number, fdLimit: number | null): Promise<RunRecord> {
  const started = Date.now()
  const base = { system, label: SYSTEMS[system].label, clients }
  let server: Started | null = null
  try {
    server = await startServer(config, { system, maxClients: clients }, fdLimit)
    const result = await runDriver(config, fdLimit, {
      system,
      protocol: SYSTEMS[system].protocol,
      url: server.ready.url,
      controlPort: server.ready.controlPort,
      clientControlPort: server.ready.controlPort,
      phases: ['connect', 'memory', 'latency', 'burst'],
      clients,
      concurrency: config.concurrency,
      warmupClients: Math.min(50, Math.ceil(clients / 10)),
      latencySamples: config.latencySamples,
      latencyWarmup: config.latencyWarmup,
      latencyGapMs: config.latencyGapMs,
      burstMessages,
      perTick: config.perTick,
      phaseTimeoutMs: config.phaseTimeoutMs
    })
    return { ...base, ok: true, seconds: (Date.now() - started) / 1000, metrics: metricsOf(result), raw: result }
  } catch (err) {
    return { ...base, ok: false, error: err instanceof Error ? err.message : String(err), seconds: (Date.now() - started) / 1000 }
  } finally {
    if (server !== null) await stop(server.child, 10_000)
  }
}

interface CrossInstanceRecord {
  scenario: string
  clients: number
  ok: boolean
  error?: string
  p50Ms: number
  p99Ms: number
  raw?: DriverResult
}

/** EXTENSION POINT: two hubs sharing a broker; trigger on A, clients on B (bench/cross-instance.ts). */
async function runCrossInstance (config: BenchConfig, scenario: CrossInstanceScenario, clients: number, fdLimit: number | null): Promise<CrossInstanceRecord> {
  const started: Started[] = []
  try {
    const serverConfig: ServerConfig = { system: 'hub', maxClients: clients, hubBroker: scenario.broker, hubRegistry: scenario.registry }
    const a = await startServer(config, serverConfig, fdLimit)
    started.push(a)
    const b = await startServer(config, serverConfig, fdLimit)
    started.push(b)
    const phases: Phase[] = ['latency']
    const result = await runDriver(config, fdLimit, {
      system: 'hub',
      protocol: 'hub',
      url: b.ready.url,
      controlPort: a.ready.controlPort,
      clientControlPort: b.ready.controlPort,
      phases,
      clients,
      concurrency: config.concurrency,
      warmupClients: 0,
      latencySamples: config.latencySamples,
      latencyWarmup: config.latencyWarmup,
      latencyGapMs: config.latencyGapMs,
      burstMessages: 0,
      perTick: [],
      phaseTimeoutMs: config.phaseTimeoutMs
    })
    return { scenario: scenario.name, clients, ok: true, p50Ms: result.latency?.p50Ms ?? Number.NaN, p99Ms: result.latency?.p99Ms ?? Number.NaN, raw: result }
  } catch (err) {
    return { scenario: scenario.name, clients, ok: false, error: err instanceof Error ? err.message : String(err), p50Ms: Number.NaN, p99Ms: Number.NaN }
  } finally {
    for (const server of started) await stop(server.child, 10_000)
  }
}

interface Started {
  child: ChildProcess
  ready: ServerReady
}

async function startServer (config: BenchConfig, serverConfig: ServerConfig, fdLimit: number | null): Promise<Started> {
  const child = spawnNode(['--expose-gc', join(here, 'server.js')], { BENCH_SERVER: JSON.stringify(serverConfig) }, fdLimit, config.verbose)
  const ready = await taggedLine(child, SERVER_READY, 30_000)
  const url = field(ready, 'url')
  const controlPort = field(ready, 'controlPort')
  if (typeof url !== 'string' || typeof controlPort !== 'number') throw new Error('server sent a malformed ready line')
  return { child, ready: { url, controlPort } }
}

async function runDriver (config: BenchConfig, fdLimit: number | null, driverConfig: DriverConfig): Promise<DriverResult> {
  const child = spawnNode([join(here, 'driver.js')], { BENCH_DRIVER: JSON.stringify(driverConfig), BENCH_VERBOSE: config.verbose ? '1' : '0' }, fdLimit, config.verbose)
  // Every phase is bounded by phaseTimeoutMs; this bounds the whole driver.
  const limitMs = config.phaseTimeoutMs * 8
  try {
    const value = await taggedLine(child, DRIVER_RESULT, limitMs)
    // Written by driver.ts from a DriverResult.
    return value as DriverResult
  } finally {
    await stop(child, 15_000)
  }
}

/** Starts node; through `sh -c 'ulimit -S -n …'` when the file limit has to be raised for it. */
function spawnNode (args: string[], env: Record<string, string>, fdLimit: number | null, verbose: boolean): ChildProcess {
  const options = { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] as Array<'ignore' | 'pipe'> }
  const child = fdLimit === null
    ? spawn(process.execPath, args, options)
    : spawn('/bin/sh', ['-c', `ulimit -S -n ${fdLimit} && exec "$0" "$@"`, process.execPath, ...args], options)
  children.add(child)
  child.once('exit', () => children.delete(child))
  const tail: string[] = []
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (chunk: string) => {
    if (verbose) process.stderr.write(chunk)
    tail.push(chunk)
    if (tail.length > 50) tail.shift()
  })
  stderrTails.set(child, tail)
  return child
}

const stderrTails = new WeakMap<ChildProcess, string[]>()

/** The JSON after `tag` on the child's stdout; rejects if the child exits first or time runs out. */
function taggedLine (child: ChildProcess, tag: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const stdout = child.stdout
    if (stdout === null) {
      reject(new Error('no stdout'))
      return
    }
    const lines = createInterface({ input: stdout })
    const finish = (err: Error | null, value?: unknown): void => {
      clearTimeout(timer)
      child.off('exit', onExit)
      lines.close()
      if (err === null) resolve(value)
      else reject(err)
    }
    const why = (): string => (stderrTails.get(child) ?? []).join('').trim().split('\n').slice(-5).join(' | ')
    const onExit = (code: number | null, signal: string | null): void => {
      finish(new Error(`exited (${signal ?? code}) before "${tag.trim()}": ${why()}`))
    }
    const timer = setTimeout(() => finish(new Error(`no "${tag.trim()}" within ${timeoutMs} ms: ${why()}`)), timeoutMs)
    child.once('exit', onExit)
    lines.on('line', (line) => {
      if (!line.startsWith(tag)) return
      try {
        finish(null, JSON.parse(line.slice(tag.length)))
      } catch (err) {
        finish(err instanceof Error ? err : new Error(String(err)))
      }
    })
  })
}

/** Waits for a child to exit; after `timeoutMs`, kills it (by its own pid). */
async function stop (child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  let timer: NodeJS.Timeout | undefined
  const timedOut = await Promise.race([
    once(child, 'exit').then(() => false),
    new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), timeoutMs) })
  ])
  clearTimeout(timer)
  if (timedOut) {
    child.kill('SIGKILL')
    await once(child, 'exit')
  }
}

/** null when the current soft limit on open files is enough for `clients` (+ slack), else the limit to set. */
function fileLimitFor (clients: number): number | null {
  const need = clients + 1_024
  const soft = ulimit('-Sn')
  if (soft >= need) return null
  const hard = ulimit('-Hn')
  if (hard < need) throw new Error(`${clients} clients need an open-file limit of ${need}, but the hard limit is ${hard} (ulimit -Hn)`)
  return need
}

function ulimit (flag: string): number {
  const out = execFileSync('/bin/sh', ['-c', `ulimit ${flag}`]).toString().trim()
  return out === 'unlimited' ? Number.POSITIVE_INFINITY : Number(out)
}

function packageVersion (name: string): string {
  try {
    const text = readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')
    const version = field(JSON.parse(text), 'version')
    return typeof version === 'string' ? version : 'unknown'
  } catch {
    return 'not installed'
  }
}

function list (value: string | undefined, fallback: string): string[] {
  return (value ?? fallback).split(',').map((s) => s.trim()).filter((s) => s !== '')
}

function positiveInt (value: string, name: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer (got ${value})`)
  return n
}

function killChildren (): void {
  for (const child of children) child.kill('SIGKILL')
}

process.once('SIGINT', () => {
  killChildren()
  process.exit(130)
})

main().then(
  (code) => { process.exitCode = code },
  (err: unknown) => {
    killChildren()
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 2
  }
)
