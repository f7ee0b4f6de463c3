import { performance } from 'node:perf_hooks'
import { startControlServer, type CpuReport, type MemoryReport } from './control.js'
import { parseServerConfig, readJsonEnv, SERVER_READY, type ServerReady } from './config.js'
import { makePayload, type BenchPayload } from './payload.js'
import { startSystem, type SystemUnderTest } from './systems/system.js'

/*
 * One server under test, in its own process (`node --expose-gc server.js`,
 * started by run.ts). It serves the system's WebSocket endpoint and, on a
 * separate port, the control channel through which the driver triggers
 * broadcasts; broadcasts run here, and the CPU they cost is measured here.
 */

interface Burst {
  cpu: NodeJS.CpuUsage
  startedAt: number
  issueMs: number
}

async function main (): Promise<void> {
  const config = parseServerConfig(readJsonEnv('BENCH_SERVER'))
  const gc = globalThis.gc
  if (gc === undefined) throw new Error('the bench server must run with --expose-gc')
  const system = await startSystem(config.system, config)
  let burst: Burst | null = null

  const control = await startControlServer(async (request) => {
    switch (request.op) {
      case 'count':
        return system.count()
      case 'memory':
        return memoryAfterGc(gc)
      case 'broadcast':
        system.broadcast(makePayload(request.seq))
        return null
      case 'burst':
        burst = await runBurst(system, request.first, request.count, request.perTick)
        return null
      case 'cpu':
        return cpuSince(burst)
      case 'stats':
        return system.stats?.() ?? null
      case 'shutdown':
        // Exit without a goodbye round: the kernel closes every socket at once,
        // which is bounded whatever state the clients are in.
        setTimeout(() => process.exit(0), 50)
        return null
    }
  })

  const ready: ServerReady = { url: system.url, controlPort: control.port }
  process.stdout.write(SERVER_READY + JSON.stringify(ready) + '\n')
}

/**
 * Issues `count` broadcasts, `perTick` of them synchronously per event-loop
 * turn (setImmediate in between, so sockets drain as they would under load).
 * Payloads are built before the clock starts.
 */
function runBurst (system: SystemUnderTest, first: number, count: number, perTick: number): Promise<Burst> {
  const payloads: BenchPayload[] = Array.from({ length: count }, (_, i) => makePayload(first + i))
  const cpu = process.cpuUsage()
  const startedAt = performance.now()
  let next = 0
  return new Promise((resolve) => {
    const turn = (): void => {
      const stop = Math.min(count, next + perTick)
      for (; next < stop; next++) system.broadcast(payloads[next] as BenchPayload)
      if (next < count) setImmediate(turn)
      else resolve({ cpu, startedAt, issueMs: performance.now() - startedAt })
    }
    turn()
  })
}

function cpuSince (burst: Burst | null): CpuReport {
  if (burst === null) throw new Error('no burst has run')
  const used = process.cpuUsage(burst.cpu)
  return { userUs: used.user, systemUs: used.system, wallMs: performance.now() - burst.startedAt, issueMs: burst.issueMs }
}

async function memoryAfterGc (gc: () => void): Promise<MemoryReport> {
  // Several rounds with a turn in between, so finalizers and weak callbacks run.
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage()
  return { rss, heapUsed, heapTotal, external, arrayBuffers }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench server: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
