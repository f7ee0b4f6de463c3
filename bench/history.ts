import { performance } from 'node:perf_hooks'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { WebSocket } from 'ws'
import wsHub from 'fastify-ws-hub'

/*
 * History's cost, with Redis as transport, registry and history store: one
 * hub, N clients (default 200) each subscribed to `plain:feed` (no history)
 * and `hist:feed` (history). Measures, per topic, publishes/s through
 * `app.wsHub.publish` (64 in flight, until every subscriber has every one)
 * and the latency from the publish call to each subscriber receiving it
 * (one publish at a time, the two topics alternating so drift hits both);
 * then the time a fresh client takes to recover 300 missed publications
 * (`subscribe` with `since` 300 behind, until `subscribed` with
 * `recovered: true`). Clients run in this process. Every key is under a
 * unique prefix, deleted at the end. Run: `npm run bench:history`
 * (REDIS_URL, BENCH_SUBSCRIBERS).
 */

const REDIS = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const N = Number(process.env.BENCH_SUBSCRIBERS ?? 200)
const PREFIX = `bench-history:${process.pid}:${Date.now()}:`
const MISSED = 300
/** Bounds of each measurement: a count and a time, whichever comes first. */
const THROUGHPUT = { publishes: 3000, ms: 3000, inFlight: 64 }
const LATENCY = { samples: 150, ms: 4000 }
const RECOVERY = { rounds: 20, ms: 5000 }
/** A phase that has not finished by then has lost messages: fail, do not hang. */
const PHASE_TIMEOUT_MS = 20_000
const TOPICS = { plain: 'plain:feed', hist: 'hist:feed' } as const
type Mode = keyof typeof TOPICS

interface Frame { type: string, topic?: string, message?: { seq: number }, offset?: number, epoch?: string, recovered?: boolean }

function percentile (sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil(p / 100 * sorted.length) - 1)] ?? NaN
}

function within<T> (promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${PHASE_TIMEOUT_MS} ms`)), PHASE_TIMEOUT_MS)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

async function connect (port: number): Promise<WebSocket> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`)
  await new Promise<void>((resolve, reject) => {
    socket.once('message', () => resolve()) // welcome
    socket.once('error', reject)
  })
  return socket
}

/** Subscribes and resolves with the `subscribed` frame. */
function subscribe (socket: WebSocket, topic: string, since?: { offset: number, epoch: string }): Promise<Frame> {
  return new Promise((resolve) => {
    const onMessage = (data: Buffer): void => {
      const frame = JSON.parse(data.toString()) as Frame
      if (frame.type === 'subscribed' && frame.topic === topic) {
        socket.off('message', onMessage)
        resolve(frame)
      }
    }
    socket.on('message', onMessage)
    socket.send(JSON.stringify({ type: 'subscribe', topic, ...(since === undefined ? {} : { since }) }))
  })
}

/**
 * What the subscribers receive: every `publish` frame is counted per topic,
 * and its latency recorded while a sample is outstanding (its send time by seq).
 */
class Receivers {
  readonly received: Record<Mode, number> = { plain: 0, hist: 0 }
  readonly sentAt = new Map<number, number>()
  readonly latencies: Record<Mode, number[]> = { plain: [], hist: [] }
  #waiting: { mode: Mode, count: number, resolve: () => void } | null = null

  onFrame (frame: Frame, now: number): void {
    if (frame.type !== 'publish') return
    const mode: Mode = frame.topic === TOPICS.hist ? 'hist' : 'plain'
    const count = ++this.received[mode]
    const sent = this.sentAt.get(frame.message?.seq ?? -1)
    if (sent !== undefined) this.latencies[mode].push(now - sent)
    if (this.#waiting !== null && this.#waiting.mode === mode && count >= this.#waiting.count) {
      const { resolve } = this.#waiting
      this.#waiting = null
      resolve()
    }
  }

  /** Resolves when `mode` has received `count` frames in all. */
  until (mode: Mode, count: number): Promise<void> {
    if (this.received[mode] >= count) return Promise.resolve()
    return new Promise((resolve) => { this.#waiting = { mode, count, resolve } })
  }
}

async function main (): Promise<void> {
  const redis = new Redis(REDIS)
  const app = Fastify({ logger: false })
  const sockets: WebSocket[] = []
  try {
    await app.register(wsHub, {
      broker: { type: 'redis', url: REDIS, channelPrefix: PREFIX },
      // History is left to its default: the registry's Redis and key prefix.
      registry: { type: 'redis', url: REDIS, keyPrefix: PREFIX },
      topics: { namespaces: { plain: {}, hist: { history: { size: 1000, ttlMs: 600_000 } } } },
      handshakeRateLimit: false,
      maxConnections: N + 100,
      maxConnectionsPerIp: N + 100,
      heartbeatIntervalMs: 0,
      rest: false,
      metrics: false
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const address = app.server.address()
    const port = typeof address === 'object' && address !== null ? address.port : 0

    const receivers = new Receivers()
    for (let i = 0; i < N; i++) {
      const socket = await connect(port)
      sockets.push(socket)
      await subscribe(socket, TOPICS.plain)
      await subscribe(socket, TOPICS.hist)
      socket.on('message', (data: Buffer) => receivers.onFrame(JSON.parse(data.toString()) as Frame, performance.now()))
    }

    let seq = 0
    const publish = (mode: Mode): Promise<unknown> => app.wsHub.publish(TOPICS[mode], { seq: ++seq, pad: 'x'.repeat(32) })

    // Warm-up: the streams exist, the connections and code paths are hot.
    for (let i = 0; i < 20; i++) {
      for (const mode of ['plain', 'hist'] as const) {
        const expected = receivers.received[mode] + N
        await publish(mode)
        await within(receivers.until(mode, expected), 'warm-up')
      }
    }

    // (1a) Throughput: up to THROUGHPUT.inFlight publish calls outstanding.
    const throughput = {} as Record<Mode, { publishes: number, perSec: number }>
    for (const mode of ['plain', 'hist'] as const) {
      const base = receivers.received[mode]
      const started = performance.now()
      let issued = 0
      const inFlight = new Set<Promise<unknown>>()
      while (issued < THROUGHPUT.publishes && performance.now() - started < THROUGHPUT.ms) {
        const call = publish(mode).finally(() => inFlight.delete(call))
        inFlight.add(call)
        issued++
        if (inFlight.size >= THROUGHPUT.inFlight) await Promise.race(inFlight)
      }
      await within(Promise.all(inFlight), `${mode} publishes`)
      await within(receivers.until(mode, base + issued * N), `${mode} deliveries`)
      throughput[mode] = { publishes: issued, perSec: issued / ((performance.now() - started) / 1000) }
    }

    // (1b) Latency: one publish at a time, the modes alternating.
    const latencyStarted = performance.now()
    let samples = 0
    while (samples < LATENCY.samples && performance.now() - latencyStarted < LATENCY.ms) {
      for (const mode of ['plain', 'hist'] as const) {
        const expected = receivers.received[mode] + N
        receivers.sentAt.set(seq + 1, performance.now())
        await publish(mode)
        await within(receivers.until(mode, expected), `${mode} latency sample`)
        receivers.sentAt.clear()
      }
      samples++
    }

    // (2) Recovery of MISSED publications by a client that was away.
    const recoverTopic = 'hist:recover'
    const first = await app.wsHub.publish(recoverTopic, { seq: 0 })
    if (first.offset === undefined || first.epoch === undefined) throw new Error('a history topic answered no offset')
    const epoch = first.epoch
    let offset = first.offset
    const recoveries: number[] = []
    const recoveryStarted = performance.now()
    while (recoveries.length < RECOVERY.rounds && performance.now() - recoveryStarted < RECOVERY.ms) {
      const inFlight: Array<Promise<unknown>> = []
      for (let i = 1; i <= MISSED; i++) {
        inFlight.push(app.wsHub.publish(recoverTopic, { seq: i }))
        if (inFlight.length >= THROUGHPUT.inFlight) await Promise.all(inFlight.splice(0))
      }
      await Promise.all(inFlight)
      const socket = await connect(port) // connected before the clock starts: recovery only
      let replayed = 0
      socket.on('message', (data: Buffer) => { if ((JSON.parse(data.toString()) as Frame).type === 'publish') replayed++ })
      const started = performance.now()
      const answer = await within(subscribe(socket, recoverTopic, { offset, epoch }), 'recovery')
      const ms = performance.now() - started
      if (answer.recovered !== true || replayed !== MISSED || answer.offset !== offset + MISSED) {
        throw new Error(`recovery failed: recovered ${String(answer.recovered)}, ${replayed} of ${MISSED} replayed, offset ${String(answer.offset)}`)
      }
      recoveries.push(ms)
      offset += MISSED
      socket.terminate()
    }

    const stats = (mode: Mode): { perSec: number, p50: number, p99: number } => {
      const sorted = [...receivers.latencies[mode]].sort((a, b) => a - b)
      return { perSec: throughput[mode].perSec, p50: percentile(sorted, 50), p99: percentile(sorted, 99) }
    }
    const plain = stats('plain')
    const hist = stats('hist')
    const table: string[][] = [
      ['topic', 'publishes/s', 'latency p50 ms', 'latency p99 ms'],
      ['no history', plain.perSec.toFixed(0), plain.p50.toFixed(2), plain.p99.toFixed(2)],
      ['with history', hist.perSec.toFixed(0), hist.p50.toFixed(2), hist.p99.toFixed(2)],
      ['history adds', `${((hist.perSec / plain.perSec - 1) * 100).toFixed(0)}%`, `+${(hist.p50 - plain.p50).toFixed(2)}`, `+${(hist.p99 - plain.p99).toFixed(2)}`]
    ]
    const widths = table[0]?.map((_, c) => Math.max(...table.map((row) => row[c]?.length ?? 0))) ?? []
    console.log(`history bench: ${N} subscribers per topic, Redis transport, registry and history (${REDIS}), clients in the same process`)
    console.log(`throughput: ${throughput.plain.publishes} / ${throughput.hist.publishes} publishes (no history / history), ${THROUGHPUT.inFlight} in flight, until every subscriber had each; latency: ${samples} publishes per topic, one at a time, x ${N} subscribers`)
    for (const row of table) console.log(row.map((cell, c) => c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0)).join('  '))
    const sortedRecoveries = [...recoveries].sort((a, b) => a - b)
    console.log(`recovery of ${MISSED} missed publications (subscribe with since -> subscribed, recovered: true), ${recoveries.length} rounds: p50 ${percentile(sortedRecoveries, 50).toFixed(1)} ms, min ${(sortedRecoveries[0] ?? NaN).toFixed(1)} ms, max ${(sortedRecoveries.at(-1) ?? NaN).toFixed(1)} ms`)
  } finally {
    for (const socket of sockets) socket.terminate()
    await app.close()
    // Delete everything the run wrote under its prefix.
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000)
      if (keys.length > 0) await redis.del(...keys)
      cursor = next
    } while (cursor !== '0')
    await redis.quit()
  }
}

await main()
