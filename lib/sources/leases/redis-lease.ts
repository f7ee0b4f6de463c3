import type { FastifyBaseLogger } from 'fastify'
import type { RedisConnection } from '../../cluster/redis/connect.js'
import { FailureLog } from '../../dispatch/failure-log.js'
import { LeaseError } from '../../errors.js'
import type { Lease } from './lease.js'
import { pause } from '../pause.js'

/**
 * KEYS: lease. ARGV: holder, ttl ms. Takes a free lease, or extends it for
 * the holder that already has it (an instance that comes back under its id
 * before the expiry does not wait out its own lease). Returns 1 or 0.
 */
const ACQUIRE = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`

/** KEYS: lease. ARGV: holder, ttl ms. Extends it only while this holder has it. Returns 1 or 0. */
const RENEW = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`

/** KEYS: lease. ARGV: holder. Deletes it only while this holder has it, never another's. Returns 1 or 0. */
const RELEASE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`

const COMMANDS = { acquire: 'wsHubLeaseAcquire', renew: 'wsHubLeaseRenew', release: 'wsHubLeaseRelease' } as const

export interface RedisLeaseOptions {
  /** A connection the lease uses and does not close (its owner does). */
  client: RedisConnection
  key: string
  /** Who holds it: the hub instance id. */
  holder: string
  /** How long it lasts unless renewed; renewed (and, while free, tried) every third of it. */
  ttlMs: number
  log: FastifyBaseLogger
}

/**
 * A lease as one Redis key holding its holder's id, with an expiry: SET NX
 * PX takes it, a compare-and-PEXPIRE script renews it, a compare-and-DEL
 * script releases it, so no instance ever extends or deletes another's.
 *
 * Time is Redis's: the key expires `ttlMs` after the last renewal Redis
 * ran. This side counts from when it sent that renewal, which is earlier,
 * so it never believes it holds a lease Redis has let go. A renewal that
 * finds another holder loses the lease at once. One that fails (Redis
 * unreachable, a timeout) is retried at the next period; the lease is lost
 * when it might expire before the attempt after that could confirm it: one
 * failed renewal is survived, a second in a row is not.
 */
export class RedisLease implements Lease {
  readonly #options: RedisLeaseOptions
  readonly #periodMs: number
  readonly #failures: FailureLog
  #lost: () => void = () => {}
  /** Until when (this clock) the lease is surely held; 0 when it is not. */
  #heldUntil = 0
  #timer: NodeJS.Timeout | null = null

  constructor (options: RedisLeaseOptions) {
    this.#options = options
    this.#periodMs = Math.max(1, Math.floor(options.ttlMs / 3))
    this.#failures = new FailureLog(options.log, `ws-hub: the lease ${options.key} could not be taken or renewed in Redis; retrying`, 10_000, 'warn')
    for (const [name, lua] of [[COMMANDS.acquire, ACQUIRE], [COMMANDS.renew, RENEW], [COMMANDS.release, RELEASE]] as const) {
      options.client.defineCommand(name, { numberOfKeys: 1, lua })
    }
  }

  async acquire (signal: AbortSignal): Promise<boolean> {
    while (!signal.aborted) {
      const sentAt = Date.now()
      try {
        if (await this.#run(COMMANDS.acquire, this.#options.ttlMs) === 1 && !signal.aborted) {
          this.#heldUntil = sentAt + this.#options.ttlMs
          this.#schedule()
          return true
        }
      } catch (err) {
        this.#failures.record(err, { lease: this.#options.key })
      }
      await pause(this.#periodMs, signal)
    }
    return false
  }

  onLost (handler: () => void): void {
    this.#lost = handler
  }

  held (): boolean {
    return Date.now() < this.#heldUntil
  }

  async release (): Promise<void> {
    this.#stop()
    if (this.#heldUntil === 0) return
    this.#heldUntil = 0
    try {
      await this.#run(COMMANDS.release)
    } catch (err) {
      throw new LeaseError(`could not release the lease ${this.#options.key}; it expires within ${this.#options.ttlMs} ms`, { cause: err })
    }
  }

  #schedule (): void {
    this.#stop()
    // Unref'd: a lease must not keep a process alive.
    this.#timer = setTimeout(() => {
      // #renew handles Redis's failures itself; only the onLost handler can throw here.
      this.#renew().catch((err: unknown) => { this.#options.log.error({ err, lease: this.#options.key }, 'ws-hub: a lease\'s onLost handler threw') })
    }, this.#periodMs).unref()
  }

  async #renew (): Promise<void> {
    this.#timer = null
    const sentAt = Date.now()
    let renewed: boolean
    try {
      renewed = await this.#run(COMMANDS.renew, this.#options.ttlMs) === 1
    } catch (err) {
      this.#failures.record(err, { lease: this.#options.key })
      if (this.#heldUntil === 0) return
      // Held still while the next attempt can confirm it before the expiry.
      if (Date.now() + this.#periodMs < this.#heldUntil) this.#schedule()
      else this.#lose()
      return
    }
    // Released meanwhile: nothing to keep.
    if (this.#heldUntil === 0) return
    if (!renewed) return this.#lose()
    this.#heldUntil = sentAt + this.#options.ttlMs
    this.#schedule()
  }

  #lose (): void {
    this.#stop()
    this.#heldUntil = 0
    this.#lost()
  }

  #stop (): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
  }

  async #run (name: string, ...args: number[]): Promise<unknown> {
    // Commands made by defineCommand exist only at run time, so ioredis' types do not list them.
    const command: unknown = Reflect.get(this.#options.client, name)
    if (typeof command !== 'function') throw new LeaseError(`Redis script ${name} is not defined on this connection`)
    const reply: unknown = await command.call(this.#options.client, this.#options.key, this.#options.holder, ...args)
    return reply
  }
}
