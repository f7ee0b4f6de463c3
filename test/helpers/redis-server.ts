import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import Fastify, { type FastifyBaseLogger } from 'fastify'
import { Redis } from 'ioredis'

export interface TapLike {
  fail: (message: string) => void
  plan: (n: number, comment?: string) => void
  teardown: (fn: () => unknown) => void
}

/**
 * The shared Redis the tests run against. Unset: the file is skipped, except
 * under CI, where skipping would let the Redis backends ship untested.
 */
export function redisUrl (t: TapLike): string | null {
  const url = process.env.REDIS_URL
  if (url !== undefined && url !== '') return url
  if (process.env.CI === 'true') {
    t.fail('REDIS_URL is not set but CI=true: the Redis backends must be tested in CI (e.g. REDIS_URL=redis://127.0.0.1:6379)')
  } else {
    t.plan(0, 'REDIS_URL not set')
  }
  return null
}

/** Whether Redis answers PING at `url` within a second; the probe is closed either way. */
export async function redisAnswers (url: string): Promise<boolean> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1_000 })
  probe.on('error', () => {})
  try {
    await probe.connect()
    return await probe.ping() === 'PONG'
  } catch {
    return false
  } finally {
    probe.disconnect()
  }
}

let prefixes = 0
/** A key/channel prefix no other run or test shares. */
export function uniquePrefix (name: string): string {
  prefixes++
  return `ws-hub-test:${name}:${process.pid}:${Date.now().toString(36)}:${prefixes}:`
}

/** Every key under a prefix; the prefixes above contain no glob characters. */
export async function keysUnder (client: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys.sort()
}

export async function deleteKeysUnder (client: Redis, prefix: string): Promise<void> {
  const keys = await keysUnder(client, prefix)
  if (keys.length > 0) await client.del(...keys)
}

/** A plain client for assertions and cleanup, closed when the test ends. */
export function plainClient (t: TapLike, url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1 })
  t.teardown(() => client.quit())
  return client
}

export interface LogLine {
  level: number
  msg: string
  err?: { message?: string, type?: string }
  [key: string]: unknown
}

export const LEVEL = { debug: 20, info: 30, warn: 40, error: 50 } as const

/** A real Fastify logger whose lines are kept for assertions. */
export function recordingLogger (): { log: FastifyBaseLogger, lines: LogLine[] } {
  const lines: LogLine[] = []
  const app = Fastify({
    logger: {
      level: 'debug',
      stream: { write: (line: string) => { lines.push(JSON.parse(line) as LogLine) } }
    }
  })
  return { log: app.log, lines }
}

/**
 * Tap's `skip` for tests that start their own redis-server: skipped when the
 * binary is missing, except under CI, where they run and fail loudly.
 */
export function needsRedisServer (): false | string {
  if (process.env.CI === 'true') return false
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0 ? false : 'redis-server binary not installed'
}

/** A loopback port nothing listens on (at the moment it is returned). */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      if (address === null || typeof address === 'string') return reject(new Error('no port'))
      server.close(() => resolve(address.port))
    })
  })
}

const START_TIMEOUT_MS = 5_000

/**
 * A private, throwaway redis-server on a free loopback port, for tests that
 * stop Redis. Never the shared one: it is started and stopped by its own PID.
 */
export class PrivateRedis {
  readonly port: number
  #child: ChildProcess | null = null
  #paused = false
  readonly #killOnExit = (): void => { this.#child?.kill('SIGKILL') }

  private constructor (port: number) {
    this.port = port
  }

  static async start (t: TapLike): Promise<PrivateRedis> {
    const server = new PrivateRedis(await freePort())
    t.teardown(() => server.stop())
    await server.start()
    return server
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start (): Promise<void> {
    if (this.#child !== null) throw new Error(`private redis on ${this.port} is already running`)
    const child = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.#child = child
    process.once('exit', this.#killOnExit)
    let output = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error(`redis-server on port ${this.port} not ready within ${START_TIMEOUT_MS} ms:\n${output}`))
      }, START_TIMEOUT_MS)
      const onData = (chunk: Buffer): void => {
        output += chunk.toString()
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer)
          child.stdout?.off('data', onData)
          resolve()
        }
      }
      child.stdout?.on('data', onData)
      child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
      child.once('error', (err) => {
        clearTimeout(timer)
        reject(new Error(`could not start redis-server on port ${this.port}: ${err.message}`))
      })
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`redis-server on port ${this.port} exited (${String(code ?? signal)}) before it was ready:\n${output}`))
      })
    })
    // Keep draining its output so a full pipe never blocks it.
    child.stdout?.resume()
  }

  /**
   * Freezes it (SIGSTOP): connections stay open and nothing answers, as a
   * hung server or a black-holed network looks. A frozen server is resumed
   * before it is stopped, so a teardown never leaves it stopped.
   */
  pause (): void {
    const pid = this.#child?.pid
    if (pid === undefined) throw new Error(`private redis on ${this.port} is not running`)
    process.kill(pid, 'SIGSTOP')
    this.#paused = true
  }

  /** Resumes a frozen server (SIGCONT). */
  resume (): void {
    const pid = this.#child?.pid
    if (pid === undefined || !this.#paused) return
    process.kill(pid, 'SIGCONT')
    this.#paused = false
  }

  /** Kills it (SIGKILL, like a crash) by its PID and waits for the exit. */
  async stop (): Promise<void> {
    this.resume()
    const child = this.#child
    if (child === null) return
    this.#child = null
    process.off('exit', this.#killOnExit)
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
    await exited
  }
}
