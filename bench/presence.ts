import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { WebSocket } from 'ws'
import wsHub from 'fastify-ws-hub'

/*
 * Presence's cost: N clients (default 10,000) subscribe to one topic of a
 * hub on the Redis registry, with the topic's `presence` off and then on.
 * Reports the subscribe rate (every client's subscribe sent at once, until
 * the last ack), the hub's heap and Redis' memory added by the subscribes,
 * and the time to page through every member. The clients run in this
 * process too; both modes have the same clients, so the differences are
 * presence's. Run: `npm run bench:presence` (REDIS_URL, BENCH_MEMBERS).
 */

const REDIS = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const N = Number(process.env.BENCH_MEMBERS ?? 10_000)
const TOPIC = 'room:lobby'

interface Result { mode: string, subscribesPerSec: number, heapMiB: number, redisMiB: number, listMs?: number, pages?: number }

async function usedMemory (redis: Redis): Promise<number> {
  const info = await redis.info('memory')
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0)
}

function heap (): number {
  globalThis.gc?.()
  return process.memoryUsage().heapUsed
}

async function run (presence: boolean, redis: Redis): Promise<Result> {
  const prefix = `bench-presence:${process.pid}:${String(presence)}:`
  const app = Fastify({ logger: false })
  await app.register(wsHub, {
    broker: { type: 'redis', url: REDIS, channelPrefix: prefix },
    registry: { type: 'redis', url: REDIS, keyPrefix: prefix },
    topics: { namespaces: { room: { presence } } },
    authenticate: (request) => ({ userId: String(request.headers['x-user']), info: { name: String(request.headers['x-user']) } }),
    handshakeRateLimit: false,
    maxConnections: N + 10,
    maxConnectionsPerIp: N + 10,
    heartbeatIntervalMs: 0,
    rest: false,
    metrics: false
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const sockets: WebSocket[] = []
  for (let start = 0; start < N; start += 100) {
    await Promise.all(Array.from({ length: Math.min(100, N - start) }, async (_, k) => {
      // Two connections per user, as tabs.
      const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { 'x-user': `u${(start + k) % Math.ceil(N / 2)}` } })
      sockets.push(socket)
      await new Promise<void>((resolve, reject) => {
        socket.once('message', () => resolve())
        socket.once('error', reject)
      })
    }))
  }
  const heapBefore = heap()
  const redisBefore = await usedMemory(redis)
  let acked = 0
  const started = process.hrtime.bigint()
  await new Promise<void>((resolve) => {
    for (const socket of sockets) {
      socket.on('message', (data) => {
        if ((JSON.parse(data.toString()) as { type: string }).type === 'ack' && ++acked === N) resolve()
      })
      socket.send(JSON.stringify({ type: 'subscribe', topic: TOPIC, id: 1 }))
    }
  })
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  const result: Result = {
    mode: presence ? 'presence on' : 'presence off',
    subscribesPerSec: Math.round(N / seconds),
    heapMiB: (heap() - heapBefore) / 2 ** 20,
    redisMiB: (await usedMemory(redis) - redisBefore) / 2 ** 20
  }
  if (presence) {
    const listed = process.hrtime.bigint()
    let cursor: string | undefined
    let pages = 0
    do {
      const page = await app.wsHub.presence(TOPIC, cursor === undefined ? { limit: 1000 } : { limit: 1000, cursor })
      cursor = page.cursor
      pages++
    } while (cursor !== undefined)
    result.listMs = Number(process.hrtime.bigint() - listed) / 1e6
    result.pages = pages
  }
  for (const socket of sockets) socket.terminate()
  await app.close()
  return result
}

async function main (): Promise<void> {
  if (globalThis.gc === undefined) throw new Error('run with --expose-gc')
  const redis = new Redis(REDIS)
  try {
    const off = await run(false, redis)
    const on = await run(true, redis)
    console.log(`presence bench: ${N} members of one topic, Redis registry and broker, clients in the same process`)
    for (const r of [off, on]) {
      const list = r.listMs === undefined ? '' : `, listing all ${N} in ${r.pages ?? 0} pages of 1000: ${r.listMs.toFixed(0)} ms`
      console.log(`${r.mode.padEnd(13)} subscribes/s ${String(r.subscribesPerSec).padStart(7)}, hub heap +${r.heapMiB.toFixed(1)} MiB, Redis +${r.redisMiB.toFixed(1)} MiB${list}`)
    }
  } finally {
    await redis.quit()
  }
}

await main()
