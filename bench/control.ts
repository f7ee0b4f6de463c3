import { connect, createServer, type Socket } from 'node:net'
import { once } from 'node:events'

/*
 * The control channel between the load driver and a server under test: one
 * TCP connection of newline-delimited JSON, on its own port, apart from the
 * WebSocket server being measured. The driver asks; the server runs the
 * broadcast itself and measures its own CPU time.
 */

export type ControlRequest =
  | { op: 'count' }
  | { op: 'memory' }
  | { op: 'broadcast', seq: number }
  | { op: 'burst', first: number, count: number, perTick: number }
  | { op: 'cpu' }
  | { op: 'stats' }
  | { op: 'shutdown' }

/** process.memoryUsage() after forced GC. */
export interface MemoryReport {
  rss: number
  heapUsed: number
  heapTotal: number
  external: number
  arrayBuffers: number
}

/** CPU the server used since the last burst started (process.cpuUsage()). */
export interface CpuReport {
  userUs: number
  systemUs: number
  /** Wall time since the burst started. */
  wallMs: number
  /** Wall time the server took to issue every broadcast of the burst. */
  issueMs: number
}

type Response = { id: number, ok: true, result: unknown } | { id: number, ok: false, error: string }

const MAX_LINE = 1024 * 1024

/** Splits a byte stream into lines; refuses a line longer than MAX_LINE. */
function onLines (socket: Socket, handle: (line: string) => void): void {
  let buffered = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => {
    buffered += chunk
    if (buffered.length > MAX_LINE) {
      socket.destroy(new Error('control: line too long'))
      return
    }
    let newline = buffered.indexOf('\n')
    while (newline !== -1) {
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      if (line.length > 0) handle(line)
      newline = buffered.indexOf('\n')
    }
  })
}

export interface ControlServer {
  port: number
  close: () => Promise<void>
}

/** Serves control requests on 127.0.0.1, one handler call per request. */
export async function startControlServer (handler: (request: ControlRequest) => Promise<unknown>): Promise<ControlServer> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    onLines(socket, (line) => {
      let id = -1
      const reply = (response: Response): void => {
        if (!socket.destroyed) socket.write(JSON.stringify(response) + '\n')
      }
      try {
        const parsed: unknown = JSON.parse(line)
        id = numberField(parsed, 'id')
        const request = parseRequest(parsed)
        handler(request).then(
          (result) => reply({ id, ok: true, result: result ?? null }),
          (err: unknown) => reply({ id, ok: false, error: errorText(err) })
        )
      } catch (err) {
        reply({ id, ok: false, error: errorText(err) })
      }
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('control: no port')
  return {
    port: address.port,
    close: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resolve())
    })
  }
}

/** The driver's side of the control channel. */
export class ControlClient {
  readonly #socket: Socket
  readonly #pending = new Map<number, { resolve: (value: unknown) => void, reject: (err: Error) => void }>()
  #nextId = 1

  private constructor (socket: Socket) {
    this.#socket = socket
    onLines(socket, (line) => this.#onLine(line))
    const failAll = (err: Error): void => {
      for (const waiter of this.#pending.values()) waiter.reject(err)
      this.#pending.clear()
    }
    socket.on('error', failAll)
    socket.on('close', () => failAll(new Error('control: connection closed')))
  }

  static async connect (port: number, host = '127.0.0.1'): Promise<ControlClient> {
    const socket = connect(port, host)
    socket.setNoDelay(true)
    await once(socket, 'connect')
    return new ControlClient(socket)
  }

  async count (): Promise<number> {
    return toNumber(await this.#request({ op: 'count' }), 'count')
  }

  async memory (): Promise<MemoryReport> {
    const value = await this.#request({ op: 'memory' })
    return {
      rss: numberField(value, 'rss'),
      heapUsed: numberField(value, 'heapUsed'),
      heapTotal: numberField(value, 'heapTotal'),
      external: numberField(value, 'external'),
      arrayBuffers: numberField(value, 'arrayBuffers')
    }
  }

  /** Resolves once the server has written the broadcast to every socket. */
  async broadcast (seq: number): Promise<void> {
    await this.#request({ op: 'broadcast', seq })
  }

  /** Resolves once the server has issued every broadcast (not once they arrive). */
  async burst (first: number, count: number, perTick: number): Promise<void> {
    await this.#request({ op: 'burst', first, count, perTick })
  }

  async cpu (): Promise<CpuReport> {
    const value = await this.#request({ op: 'cpu' })
    return {
      userUs: numberField(value, 'userUs'),
      systemUs: numberField(value, 'systemUs'),
      wallMs: numberField(value, 'wallMs'),
      issueMs: numberField(value, 'issueMs')
    }
  }

  /** Whatever counters the system keeps (the hub's stats(), prepared-frame counters). */
  async stats (): Promise<unknown> {
    return this.#request({ op: 'stats' })
  }

  /** Asks the server to exit; resolves when it has hung up (at most `timeoutMs`). */
  async shutdown (timeoutMs = 10_000): Promise<void> {
    const closed = once(this.#socket, 'close')
    await this.#request({ op: 'shutdown' }).catch(() => {})
    let timer: NodeJS.Timeout | undefined
    await Promise.race([closed, new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
    clearTimeout(timer)
    this.#socket.destroy()
  }

  close (): void {
    this.#socket.destroy()
  }

  #request (request: ControlRequest): Promise<unknown> {
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      this.#socket.write(JSON.stringify({ id, ...request }) + '\n')
    })
  }

  #onLine (line: string): void {
    const parsed: unknown = JSON.parse(line)
    const id = numberField(parsed, 'id')
    const waiter = this.#pending.get(id)
    if (waiter === undefined) return
    this.#pending.delete(id)
    if (field(parsed, 'ok') === true) waiter.resolve(field(parsed, 'result'))
    else waiter.reject(new Error(`server: ${String(field(parsed, 'error'))}`))
  }
}

function parseRequest (value: unknown): ControlRequest {
  const op = field(value, 'op')
  switch (op) {
    case 'count':
    case 'memory':
    case 'cpu':
    case 'stats':
    case 'shutdown':
      return { op }
    case 'broadcast':
      return { op, seq: numberField(value, 'seq') }
    case 'burst':
      return { op, first: numberField(value, 'first'), count: numberField(value, 'count'), perTick: numberField(value, 'perTick') }
    default:
      throw new Error(`unknown op ${JSON.stringify(op)}`)
  }
}

export function field (value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null ? Reflect.get(value, name) : undefined
}

export function numberField (value: unknown, name: string): number {
  return toNumber(field(value, name), name)
}

function toNumber (value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`control: "${name}" is not a finite number`)
  return value
}

export function errorText (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
