import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { existsSync } from 'node:fs'
import type { WsHubOptions } from '../../lib/index.js'

const script = fileURLToPath(new URL('./hub-process.mjs', import.meta.url))
const built = fileURLToPath(new URL('../../dist/index.js', import.meta.url))

export interface Teardown {
  teardown: (fn: () => unknown) => void
}

/** A hub running in a child process; killed by its PID when the test ends. */
export class HubProcess {
  readonly child: ChildProcess
  readonly port: number
  readonly instanceId: string

  private constructor (child: ChildProcess, port: number, instanceId: string) {
    this.child = child
    this.port = port
    this.instanceId = instanceId
  }

  /** `userHeader`: authenticate users by that request header's value (a function cannot cross into the child). */
  static async start (t: Teardown, options: WsHubOptions & { userHeader?: string }, timeoutMs = 30_000): Promise<HubProcess> {
    if (!existsSync(built)) throw new Error('dist/ is missing: run `npm run build` first (npm test does)')
    const child = spawn(process.execPath, [script, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] })
    t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
    const line = await new Promise<string>((resolve, reject) => {
      let output = ''
      const timer = setTimeout(() => reject(new Error(`hub process not ready within ${timeoutMs} ms: ${output}`)), timeoutMs)
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        const ready = output.split('\n').find((l) => l.startsWith('READY '))
        if (ready !== undefined) { clearTimeout(timer); resolve(ready) }
      })
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`hub process exited (${String(code)}) before it was ready: ${output}`)) })
    })
    const [, port = '0', instanceId = ''] = line.split(' ')
    return new HubProcess(child, Number(port), instanceId)
  }

  get url (): string {
    return `http://127.0.0.1:${this.port}`
  }

  get wsUrl (): string {
    return `ws://127.0.0.1:${this.port}/ws`
  }

  /** Freezes the process (SIGSTOP), as a long GC pause or a stalled VM does; `resume` undoes it. */
  pause (): void {
    if (this.child.pid !== undefined) process.kill(this.child.pid, 'SIGSTOP')
  }

  resume (): void {
    if (this.child.pid !== undefined) process.kill(this.child.pid, 'SIGCONT')
  }

  /** A crash: no shutdown hooks run, nothing is released. */
  async kill (): Promise<void> {
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()))
    if (this.child.pid !== undefined) process.kill(this.child.pid, 'SIGKILL')
    await exited
  }
}
