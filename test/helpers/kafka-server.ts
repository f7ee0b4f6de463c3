import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from './redis-server.js'

const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'kafka.sh')

export interface TapGate {
  fail: (message: string) => void
  teardown: (fn: () => unknown) => void
}

/**
 * The shared Kafka the tests run against (KAFKA_BROKERS). Unset: null, and
 * the caller skips, except under CI, where skipping would let the Kafka
 * backend ship untested.
 */
export function kafkaBrokers (t: TapGate): string[] | null {
  const value = (process.env.KAFKA_BROKERS ?? '').trim()
  if (value !== '') return value.split(',')
  if (process.env.CI === 'true') t.fail('KAFKA_BROKERS is not set: CI must run the Kafka tests (bash scripts/kafka.sh start prints it)')
  return null
}

export function runKafkaSh (args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', [script, ...args], { env, timeout: 120_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`kafka.sh ${args.join(' ')} failed: ${err.message}\n${stderr}`))
      else resolve(stdout)
    })
  })
}

/**
 * A private single-node Kafka on free loopback ports and a temporary data
 * directory, for tests that stop and restart it; the shared broker is never
 * touched. Stopped (and its data removed) when the test ends.
 */
export class PrivateKafka {
  readonly port: number
  readonly #env: NodeJS.ProcessEnv
  readonly #dataDir: string
  /** The PID `freeze` stopped, until `thaw`. */
  #frozen: number | null = null

  private constructor (port: number, env: NodeJS.ProcessEnv, dataDir: string) {
    this.port = port
    this.#env = env
    this.#dataDir = dataDir
  }

  static async start (t: TapGate): Promise<PrivateKafka> {
    const dataDir = await mkdtemp(join(tmpdir(), 'ws-hub-kafka-'))
    const port = await freePort()
    const env: NodeJS.ProcessEnv = { ...process.env, KAFKA_PORT: String(port), KAFKA_CONTROLLER_PORT: String(await freePort()), KAFKA_DATA_DIR: dataDir }
    delete env.KAFKA_KEEP_DATA
    const kafka = new PrivateKafka(port, env, dataDir)
    t.teardown(async () => {
      kafka.thaw()
      await runKafkaSh(['stop'], env).catch(() => {})
      await rm(dataDir, { recursive: true, force: true })
    })
    await runKafkaSh(['start'], env)
    return kafka
  }

  get brokers (): string[] {
    return [`127.0.0.1:${this.port}`]
  }

  /** Stops it, keeping its topics for `resume`. */
  async pause (): Promise<void> {
    await runKafkaSh(['stop', '--keep-data'], this.#env)
  }

  async resume (): Promise<void> {
    await runKafkaSh(['start', '--keep-data'], this.#env)
  }

  get dataDir (): string {
    return this.#dataDir
  }

  /**
   * Freezes the broker's JVM (SIGSTOP): connections stay open and nothing
   * answers, as a hung broker looks. The teardown thaws it before stopping,
   * so a failed test never leaves a stopped process behind.
   */
  async freeze (): Promise<void> {
    const pid = await this.#pid()
    this.#frozen = pid
    process.kill(pid, 'SIGSTOP')
  }

  /** Resumes a frozen broker (SIGCONT). */
  thaw (): void {
    if (this.#frozen === null) return
    process.kill(this.#frozen, 'SIGCONT')
    this.#frozen = null
  }

  // kafka.sh writes the JVM's own PID, so the signal reaches the broker and
  // not a wrapper shell.
  async #pid (): Promise<number> {
    const pid = Number((await readFile(join(this.#dataDir, 'kafka.pid'), 'utf8')).trim())
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new Error(`no broker PID in ${this.#dataDir}/kafka.pid`)
    return pid
  }
}
