import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { WebSocket, type ClientOptions } from 'ws'
import wsHub, { type WsHubOptions } from '../lib/index.js'

export interface Tap {
  teardown: (fn: () => unknown) => void
}

export interface Built {
  app: FastifyInstance
  url: string
  wsUrl: string
  port: number
}

/** A hub listening on an ephemeral loopback port, closed when the test ends. */
export async function build (t: Tap, options: WsHubOptions = {}, server: FastifyServerOptions = {}, setup?: (app: FastifyInstance) => void | Promise<void>): Promise<Built> {
  const app = Fastify({ logger: false, ...server })
  await app.register(wsHub, testDefaults(options))
  if (setup !== undefined) await setup(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  const path = options.path ?? '/ws'
  return { app, port: address.port, url: `http://127.0.0.1:${address.port}`, wsUrl: `ws://127.0.0.1:${address.port}${path}` }
}

/**
 * Tests run without heartbeats unless they ask, and with the push API open
 * on purpose unless they choose an auth (register refuses to guess).
 */
export function testDefaults (options: WsHubOptions): WsHubOptions {
  const out: WsHubOptions = { ...options }
  if (out.heartbeatIntervalMs === undefined && out.heartbeatInterval === undefined) out.heartbeatIntervalMs = 0
  if (out.rest === undefined) out.rest = { auth: false }
  else if (out.rest !== false && out.rest.auth === undefined) out.rest = { ...out.rest, auth: false }
  return out
}

export type Frame = Record<string, unknown> & { type: string }

/** Numbers the default sentinel pings, so each waits for its own pong. */
let sentinels = 0

/** A ws client that queues every frame so tests can await them in order. */
export class TestClient {
  readonly socket: WebSocket
  readonly frames: Frame[] = []
  readonly closed: Promise<{ code: number, reason: string }>
  clientId = ''
  #waiters: Array<() => void> = []

  constructor (url: string, options: ClientOptions = {}) {
    this.socket = new WebSocket(url, options)
    this.socket.on('message', (data) => {
      this.frames.push(JSON.parse(data.toString()) as Frame)
      for (const wake of this.#waiters.splice(0)) wake()
    })
    this.closed = new Promise((resolve) => {
      this.socket.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() })
        for (const wake of this.#waiters.splice(0)) wake()
      })
    })
    this.socket.on('error', () => {})
  }

  /** Opens and consumes the welcome frame. */
  async ready (): Promise<this> {
    const welcome = await this.next('welcome')
    this.clientId = String(welcome.clientId)
    return this
  }

  send (frame: unknown): void {
    this.socket.send(typeof frame === 'string' ? frame : JSON.stringify(frame))
  }

  /** The next frame (of a type, if given), skipping others of other types. */
  async next (type?: string, timeoutMs = 5000): Promise<Frame> {
    const index = await this.#waitFor((f) => type === undefined || f.type === type, type ?? 'frame', timeoutMs)
    return this.frames.splice(index, 1)[0] as Frame
  }

  /**
   * Whether no frame of `type` arrived before the sentinel's answer. After
   * the action that must not produce a frame, `sentinel` makes the server
   * send this client something it will receive (by default a ping, answered
   * by its pong). A socket delivers in order, so once the answer is here
   * nothing sent earlier can still be in flight: no fixed sleep, which a
   * busy machine turns into a lie. A string `answer` matches the first new
   * frame of that type; a predicate picks the answer among new frames.
   */
  async nothingBefore (type: string, sentinel?: () => Promise<void> | void, answer: string | ((frame: Frame) => boolean) = 'pong'): Promise<boolean> {
    const earlier = new Set(this.frames)
    let isAnswer = typeof answer === 'string' ? (f: Frame) => f.type === answer : answer
    if (sentinel === undefined) {
      const id = `sentinel-${++sentinels}`
      this.send({ type: 'ping', id })
      isAnswer = (f) => f.type === 'pong' && f.id === id
    } else {
      await sentinel()
    }
    const index = await this.#waitFor((f) => !earlier.has(f) && isAnswer(f), 'answer to the sentinel', 5000)
    const before = this.frames.slice(0, index)
    this.frames.splice(index, 1)
    return !before.some((f) => f.type === type)
  }

  /** The index of the first queued frame that matches, once there is one. */
  async #waitFor (matches: (frame: Frame) => boolean, what: string, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const index = this.frames.findIndex(matches)
      if (index !== -1) return index
      const left = deadline - Date.now()
      if (left <= 0 || this.socket.readyState === WebSocket.CLOSED) {
        throw new Error(`no ${what} within ${timeoutMs} ms; have ${JSON.stringify(this.frames)}`)
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  close (): void {
    this.socket.close()
  }
}

export async function connect (url: string, options: ClientOptions = {}): Promise<TestClient> {
  return new TestClient(url, options).ready()
}

/** Waits until a condition holds, polling; for state that settles after events. */
export async function until (condition: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** Resolves with the HTTP status of a handshake the server refused, or 101. */
export function handshakeStatus (url: string, options: ClientOptions = {}): Promise<{ status: number, socket?: WebSocket, body?: string }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, options)
    socket.on('open', () => resolve({ status: 101, socket }))
    socket.on('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => { body += chunk.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    socket.on('error', reject)
  })
}
