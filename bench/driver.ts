import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { ControlClient } from './control.js'
import { closeClients, openClient, openClients, type BenchClient } from './clients.js'
import { DRIVER_RESULT, parseDriverConfig, readJsonEnv, type BurstResult, type DriverConfig, type DriverResult, type LatencyResult } from './config.js'
import { DeliveryTracker, percentile } from './tracker.js'

/*
 * The load driver: one process, started by run.ts for each system and client
 * count, that opens the clients, triggers broadcasts over the control channel
 * and times their arrival. It prints one BENCH_RESULT line and exits.
 */

const POLL_MS = 20

async function main (): Promise<void> {
  const config = parseDriverConfig(readJsonEnv('BENCH_DRIVER'))
  const control = await ControlClient.connect(config.controlPort)
  const clientControl = config.clientControlPort === config.controlPort ? control : await ControlClient.connect(config.clientControlPort)
  const tracker = new DeliveryTracker()
  const open = (): Promise<BenchClient> => openClient(config.protocol, config.url, (seq) => tracker.onSeq(seq), config.phaseTimeoutMs)
  const has = (phase: DriverConfig['phases'][number]): boolean => config.phases.includes(phase)
  const result: DriverResult = { bursts: [], strays: 0 }

  if (config.warmupClients > 0) {
    progress(`warm-up: ${config.warmupClients} clients`)
    const warm = await openClients(config.warmupClients, config.concurrency, open)
    await closeClients(warm, config.phaseTimeoutMs)
    await waitForCount(clientControl, (count) => count === 0, config.phaseTimeoutMs, 'warm-up clients to be gone')
  }

  const before = has('memory') ? await clientControl.memory() : null
  progress(`opening ${config.clients} clients, ${config.concurrency} in flight`)
  const started = performance.now()
  const clients = await openClients(config.clients, config.concurrency, open)
  const connectMs = performance.now() - started
  await waitForCount(clientControl, (count) => count >= config.clients, config.phaseTimeoutMs, `${config.clients} connections on the server`)
  if (has('connect')) result.connect = { clients: config.clients, ms: connectMs, perSec: config.clients / (connectMs / 1000) }
  if (before !== null) {
    const after = await clientControl.memory()
    result.memory = {
      before,
      after,
      rssPerConnection: (after.rss - before.rss) / config.clients,
      heapPerConnection: (after.heapUsed - before.heapUsed) / config.clients
    }
  }

  let seq = 1
  let perClient = 0
  if (has('latency')) {
    progress(`latency: ${config.latencyWarmup} + ${config.latencySamples} broadcasts, one at a time`)
    const samples: number[] = []
    for (let i = 0; i < config.latencyWarmup + config.latencySamples; i++) {
      const arrived = tracker.expect(seq, 1, config.clients, config.phaseTimeoutMs)
      const sentAt = performance.now()
      const [lastAt] = await Promise.all([arrived, control.broadcast(seq)])
      if (i >= config.latencyWarmup) samples.push(lastAt - sentAt)
      seq++
      perClient++
      await sleep(config.latencyGapMs)
    }
    result.latency = summarize(samples)
  }

  if (has('burst')) {
    for (const perTick of config.perTick) {
      progress(`throughput: ${config.burstMessages} broadcasts, ${perTick} per tick`)
      const deliveries = config.burstMessages * config.clients
      const arrived = tracker.expect(seq, config.burstMessages, config.clients, config.phaseTimeoutMs)
      const sentAt = performance.now()
      const [lastAt] = await Promise.all([arrived, control.burst(seq, config.burstMessages, perTick)])
      const cpu = await control.cpu()
      const ms = lastAt - sentAt
      const burst: BurstResult = {
        perTick,
        messages: config.burstMessages,
        deliveries,
        ms,
        deliveriesPerSec: deliveries / (ms / 1000),
        cpu,
        cpuUsPerDelivery: (cpu.userUs + cpu.systemUs) / deliveries
      }
      result.bursts.push(burst)
      seq += config.burstMessages
      perClient += config.burstMessages
      await sleep(config.latencyGapMs)
    }
  }

  checkEveryClient(clients, perClient)
  result.strays = tracker.strays
  result.serverStats = await clientControl.stats()
  process.stdout.write(DRIVER_RESULT + JSON.stringify(result) + '\n')
  await control.shutdown()
  if (clientControl !== control) await clientControl.shutdown()
  for (const client of clients) client.socket.terminate()
}

/** Each client must have received every measured broadcast, once. */
function checkEveryClient (clients: BenchClient[], expected: number): void {
  const wrong = clients.filter((client) => client.received !== expected)
  if (wrong.length > 0) {
    const sample = wrong.slice(0, 5).map((client) => client.received).join(', ')
    throw new Error(`${wrong.length} of ${clients.length} clients did not receive exactly ${expected} broadcasts (e.g. ${sample})`)
  }
}

async function waitForCount (control: ControlClient, done: (count: number) => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs
  let count = await control.count()
  while (!done(count)) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (server counts ${count})`)
    await sleep(POLL_MS)
    count = await control.count()
  }
}

function summarize (samples: number[]): LatencyResult {
  return {
    samplesMs: samples,
    p50Ms: percentile(samples, 50),
    p99Ms: percentile(samples, 99),
    meanMs: samples.reduce((sum, x) => sum + x, 0) / samples.length,
    maxMs: Math.max(...samples)
  }
}

function progress (message: string): void {
  if (process.env.BENCH_VERBOSE === '1') process.stderr.write(`  driver: ${message}\n`)
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench driver: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exit(1)
  }
)
