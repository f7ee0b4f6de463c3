import { EventEmitter } from 'node:events'
import { WebSocket } from 'ws'

/** Just enough of a ws WebSocket for unit tests of the manager and dispatcher. */
export class FakeSocket extends EventEmitter {
  readyState: number = WebSocket.OPEN
  bufferedAmount = 0
  readonly sent: string[] = []
  pings = 0
  terminated = false
  closedWith: { code: number, reason: string } | null = null

  send (data: Buffer | string, options?: { binary?: boolean }): void {
    if (options?.binary !== false) throw new Error('text frames expected')
    this.sent.push(data.toString())
  }

  ping (): void {
    this.pings++
  }

  close (code: number, reason: string): void {
    this.closedWith = { code, reason }
    this.readyState = WebSocket.CLOSING
  }

  terminate (): void {
    this.terminated = true
    this.readyState = WebSocket.CLOSED
  }

  frames (): Array<Record<string, unknown>> {
    return this.sent.map((s) => JSON.parse(s) as Record<string, unknown>)
  }
}

/** A logger that records what it was told, to assert on warnings. */
export function recordingLogger (): { lines: Array<{ level: string, args: unknown[] }>, log: never } {
  const lines: Array<{ level: string, args: unknown[] }> = []
  const make = (level: string) => (...args: unknown[]) => { lines.push({ level, args }) }
  const log = {
    level: 'info',
    fatal: make('fatal'),
    error: make('error'),
    warn: make('warn'),
    info: make('info'),
    debug: make('debug'),
    trace: make('trace'),
    silent: make('silent'),
    child: () => log
  }
  return { lines, log: log as never }
}
