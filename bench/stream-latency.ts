import { spawn, type ChildProcess } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'

/*
 * Cross-instance added latency under a steady stream: hub A broadcasts
 * `--rate` messages per second for `--seconds`; one client listens on A
 * (local delivery) and one on B (through the broker). Each message carries
 * its send time, so each client measures send-to-receive latency; the
 * difference between the two is what the broker adds. Needs REDIS_URL
 * and/or KAFKA_BROKERS; run with `npm run bench:stream`.
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

/** A client that records the latency of every broadcast it receives. */
async function listen (port: number): Promise<{ latencies: number[], close: () => void }> {
  const latencies: number[] = []
  const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`)
  await new Promise<void>((resolve, reject) => {
    socket.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as { type: string, message?: { t?: number } }
      if (frame.type === 'welcome') resolve()
      else if (frame.type === 'server-broadcast' && typeof frame.message?.t === 'number') {
        latencies.push(performance.timeOrigin + performance.now() - frame.message.t)
      }
    })
    socket.on('error', reject)
  })
  return { latencies, close: () => socket.close() }
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

export async function measure (scenario: string, broker: unknown, options: Options): Promise<StreamResult> {
  const hubOptions = { broker }
  const [a, b] = await Promise.all([startHub(hubOptions), startHub(hubOptions)])
  try {
    const local = await listen(a.port)
    const remote = await listen(b.port)
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
  if (scenarios.length === 0) throw new Error('set REDIS_URL and/or KAFKA_BROKERS')
  const results: StreamResult[] = []
  for (const [name, broker] of scenarios) {
    process.stderr.write(`[stream] ${name}: ${options.rate} msg/s for ${options.seconds} s ...\n`)
    results.push(await measure(name, broker, options))
  }
  const f = (n: number): string => n.toFixed(2)
  process.stdout.write('\ncross-instance added latency under a steady stream (one client on the sending instance, one on the other)\n')
  for (const r of results) {
    process.stdout.write(`  ${r.scenario} at ${r.rate} msg/s: sent ${r.sent}; local p50 ${f(r.local.p50Ms)} / p99 ${f(r.local.p99Ms)} ms (${r.local.received} received); ` +
      `remote p50 ${f(r.remote.p50Ms)} / p99 ${f(r.remote.p99Ms)} ms (${r.remote.received} received); added p50 ${f(r.addedP50Ms)} ms, p99 ${f(r.addedP99Ms)} ms\n`)
  }
  process.stdout.write(JSON.stringify(results) + '\n')
  const lost = results.some((r) => r.remote.received === 0 || r.local.received === 0)
  process.exitCode = lost ? 1 : 0
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`[stream] ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exitCode = 1
  })
}
