import { spawn, type ChildProcess } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'

/*
 * Cross-instance added latency under a steady stream: hub A broadcasts
 * `--rate` messages per second for `--seconds`; one client listens on A
 * (local delivery) and one on B (through the broker). Each message carries
 * its send time, so each client measures send-to-receive latency; the
 * difference between the two is what the broker adds (with REDIS_URL and/or
 * KAFKA_BROKERS). It also measures conflation on one hub. Run with
 * `npm run bench:stream`.
 */

interface Options { rate: number, seconds: number }

function parseArgs (argv: string[]): Options {
  const options: Options = { rate: 10_000, seconds: 5 }
  for (let i = 0; i < argv.length; i++) {
    const value = Number(argv[i + 1])
    if (argv[i] === '--rate') { options.rate = value; i++ } else if (argv[i] === '--seconds') { options.seconds = value; i++ } else throw new Error(`unknown argument ${argv[i] ?? ''} (use --rate N --seconds N)`)
  }
  if (!(options.rate > 0) || !(options.seconds > 0)) throw new Error('--rate and --seconds must be positive numbers')
  return options
}

const hubScript = fileURLToPath(new URL('./stream-hub.js', import.meta.url))

interface Hub { child: ChildProcess, port: number, lines: AsyncIterator<string> }

async function startHub (options: unknown): Promise<Hub> {
  const child = spawn(process.execPath, [hubScript, JSON.stringify(options)], { stdio: ['pipe', 'pipe', 'inherit'] })
  const queue: string[] = []
  let wake: (() => void) | null = null
  let buffer = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString()
    const parts = buffer.split('\n')
    buffer = parts.pop() ?? ''
    queue.push(...parts)
    wake?.()
  })
  const lines: AsyncIterator<string> = {
    next: async () => {
      const deadline = Date.now() + 60_000
      while (queue.length === 0) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error('stream hub exited or went silent')
        await new Promise<void>((resolve) => { wake = resolve; setTimeout(resolve, 100) })
      }
      return { done: false, value: queue.shift() as string }
    }
  }
  const ready = (await lines.next()).value
  if (!ready.startsWith('ready ')) throw new Error(`stream hub said ${ready}`)
  return { child, port: Number(ready.slice(6)), lines }
}

/** A client that records the latency of every broadcast (or `ticker` publish) it receives. */
async function listen (port: number, topic: string | null): Promise<{ latencies: number[], last: number, close: () => void }> {
  const state = { latencies: [] as number[], last: -1, close: () => socket.close() }
  const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`)
  await new Promise<void>((resolve, reject) => {
    socket.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as { type: string, message?: { t?: number, n?: number } }
      if (frame.type === 'welcome') {
        if (topic === null) resolve()
        else socket.send(JSON.stringify({ type: 'subscribe', topic, id: 'sub' }))
      } else if (frame.type === 'ack') {
        resolve()
      } else if ((frame.type === 'server-broadcast' || frame.type === 'publish') && typeof frame.message?.t === 'number') {
        state.latencies.push(performance.timeOrigin + performance.now() - frame.message.t)
        state.last = frame.message.n ?? -1
      }
    })
    socket.on('error', reject)
  })
  return state
}

function percentile (values: number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

export interface StreamResult {
  scenario: string
  rate: number
  sent: number
  local: { received: number, p50Ms: number, p99Ms: number }
  remote: { received: number, p50Ms: number, p99Ms: number }
  addedP50Ms: number
  addedP99Ms: number
}

export interface ConflationResult {
  rate: number
  conflateMs: number
  sent: number
  received: number
  conflatedDrops: number
  /** Whether the last value published was the last one received. */
  latestDelivered: boolean
  p50Ms: number
  p99Ms: number
}

/**
 * Conflation: one hub publishes a `rate`/s price feed to topic `ticker`
 * conflated per `conflateMs`; a subscriber should see about 1000/conflateMs
 * values per second, always ending on the latest.
 */
export async function measureConflation (options: Options, conflateMs: number): Promise<ConflationResult> {
  const hub = await startHub({})
  try {
    const client = await listen(hub.port, 'ticker')
    hub.child.stdin?.write(`stream ${options.rate} ${options.seconds * 1000} ${conflateMs}\n`)
    const [, sent = '0', drops = '0'] = (await hub.lines.next()).value.split(' ')
    await new Promise((resolve) => setTimeout(resolve, conflateMs * 3))
    client.close()
    return {
      rate: options.rate,
      conflateMs,
      sent: Number(sent),
      received: client.latencies.length,
      conflatedDrops: Number(drops),
      latestDelivered: client.last === Number(sent) - 1,
      p50Ms: percentile(client.latencies, 50),
      p99Ms: percentile(client.latencies, 99)
    }
  } finally {
    hub.child.stdin?.end('quit\n')
    setTimeout(() => hub.child.kill('SIGKILL'), 5_000).unref()
  }
}

export async function measure (scenario: string, broker: unknown, options: Options): Promise<StreamResult> {
  const hubOptions = { broker }
  const [a, b] = await Promise.all([startHub(hubOptions), startHub(hubOptions)])
  try {
    const local = await listen(a.port, null)
    const remote = await listen(b.port, null)
    a.child.stdin?.write(`stream ${options.rate} ${options.seconds * 1000}\n`)
    const done = (await a.lines.next()).value
    const sent = Number(done.split(' ')[1])
    // Let the tail of the stream arrive.
    const deadline = Date.now() + 5_000
    while ((local.latencies.length < sent || remote.latencies.length < sent) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    local.close()
    remote.close()
    const stats = (l: number[]): StreamResult['local'] => ({ received: l.length, p50Ms: percentile(l, 50), p99Ms: percentile(l, 99) })
    const l = stats(local.latencies)
    const r = stats(remote.latencies)
    return { scenario, rate: options.rate, sent, local: l, remote: r, addedP50Ms: r.p50Ms - l.p50Ms, addedP99Ms: r.p99Ms - l.p99Ms }
  } finally {
    for (const hub of [a, b]) {
      hub.child.stdin?.end('quit\n')
      setTimeout(() => hub.child.kill('SIGKILL'), 5_000).unref()
    }
  }
}

async function main (): Promise<void> {
  const options = parseArgs(process.argv.slice(2))
  const scenarios: Array<[string, unknown]> = []
  const redis = process.env.REDIS_URL
  if (redis !== undefined && redis !== '') scenarios.push(['redis', { type: 'redis', url: redis, channelPrefix: `ws-hub-stream:${process.pid}:` }])
  const kafka = process.env.KAFKA_BROKERS
  if (kafka !== undefined && kafka !== '') scenarios.push(['kafka', { type: 'kafka', brokers: kafka.split(','), topic: `ws-hub-stream-${process.pid}` }])
  const results: StreamResult[] = []
  for (const [name, broker] of scenarios) {
    process.stderr.write(`[stream] ${name}: ${options.rate} msg/s for ${options.seconds} s ...\n`)
    results.push(await measure(name, broker, options))
  }
  process.stderr.write(`[stream] conflation: ${options.rate} updates/s for ${options.seconds} s, 100 ms window ...\n`)
  const conflation = await measureConflation(options, 100)
  const f = (n: number): string => n.toFixed(2)
  process.stdout.write(`\nconflation: ${conflation.rate} updates/s under one key, 100 ms window: sent ${conflation.sent}, subscriber received ${conflation.received} ` +
    `(${(conflation.received / options.seconds).toFixed(1)}/s), ${conflation.conflatedDrops} replaced, ended on the latest: ${String(conflation.latestDelivered)}; ` +
    `staleness of delivered values p50 ${f(conflation.p50Ms)} / p99 ${f(conflation.p99Ms)} ms\n`)
  if (results.length === 0) process.stdout.write('(set REDIS_URL and/or KAFKA_BROKERS for the cross-instance streams)\n')
  process.stdout.write('\ncross-instance added latency under a steady stream (one client on the sending instance, one on the other)\n')
  for (const r of results) {
    process.stdout.write(`  ${r.scenario} at ${r.rate} msg/s: sent ${r.sent}; local p50 ${f(r.local.p50Ms)} / p99 ${f(r.local.p99Ms)} ms (${r.local.received} received); ` +
      `remote p50 ${f(r.remote.p50Ms)} / p99 ${f(r.remote.p99Ms)} ms (${r.remote.received} received); added p50 ${f(r.addedP50Ms)} ms, p99 ${f(r.addedP99Ms)} ms\n`)
  }
  process.stdout.write(JSON.stringify({ streams: results, conflation }) + '\n')
  const lost = results.some((r) => r.remote.received === 0 || r.local.received === 0) || conflation.received === 0
  process.exitCode = lost ? 1 : 0
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`[stream] ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exitCode = 1
  })
}
