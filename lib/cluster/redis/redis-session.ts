import type { FastifyBaseLogger } from 'fastify'
import type { Eviction, EvictionHandler } from '../limiter.js'
import type { RedisRegistryOptions } from '../../options/backend-options.js'
import { ClusterStateError, OptionsError } from '../../errors.js'
import { RECONNECT_MAX_MS, checkSource, closeConnection, connectConnection, describeSource, isCluster, openConnection, type RedisConnection, type RedisSource } from './connect.js'
import { keyLayout, registryPrefix, type KeyLayout } from './keys.js'
import { clearLocalState, emptyLocalState, snapshot, type KnownLimits, type LocalState } from './local-state.js'
import { describeDetail, parseEviction, toCode } from './replies.js'
import { INSTANCES, LEASE_LOST, LEAVE, REFRESH, SYNC, defineScripts, runScript, type Script, type ScriptContext } from './scripts.js'
import { SessionHealth } from './session-health.js'
import { BACKEND_DEFAULTS, MIN_LEASE_MS } from '../../options/backend-options.js'

/** Default for `keyPrefix`, from the option's schema. */
export const DEFAULT_KEY_PREFIX = BACKEND_DEFAULTS.redisRegistry.keyPrefix
/** Default for `leaseMs`, from the option's schema. */
export const DEFAULT_LEASE_MS = BACKEND_DEFAULTS.redisRegistry.leaseMs
export { MIN_LEASE_MS }
export { takeOne, type KnownLimits, type LocalState } from './local-state.js'

export interface WriteHooks {
  /** Runs once the write is sure to be sent after any repair, before it is sent. */
  before?: () => void
  /** Runs with the script's reply, before anything else can observe this instance's state. */
  after?: (code: number) => void
}

// Waiting on a repair only orders writes after it; its failure is reported
// to whoever started it (the lease timer logs it).
const ignore = (): void => {}

/**
 * One hub instance's footing in Redis, shared by its limiter and directory:
 * the connection, the lease and the repair of this instance's state.
 *
 * Leases. `join` gives the instance a lease of `leaseMs`, renewed every
 * `leaseMs / 3` by an unref'd timer; slots and connections are counted per
 * instance. An instance that dies without `leave` (SIGKILL, a lost host)
 * stops renewing, and its lease expires at most `leaseMs` after its last
 * renewal. Every reservation first reaps expired instances, so their slots
 * are available to the very next reservation after expiry: at most
 * `leaseMs` after the crash. The rest of its state (connections, users, the
 * counts the limiter reads) goes at the next reap, which every live
 * instance runs each `leaseMs / 3`: at most `leaseMs + leaseMs / 3` after
 * the crash while any instance lives. `leave` removes the instance at once.
 * Lease time is Redis' serving time: a silence of Redis longer than a
 * renewal period (stopped, hung, unreachable) is not counted against any
 * lease, and after a long one every lease gets `leaseMs` plus the reconnect
 * delay from the moment Redis serves again (see "Stalls" in `scripts.ts`).
 *
 * Repair. The session keeps this instance's own slots and connections in
 * memory. Redis is brought back to that truth (one script replacing the
 * instance's state) whenever it may differ: after a write whose outcome is
 * unknown (Redis unreachable, timeout), after the lease lapsed (Redis
 * restarted empty, or the process stalled for longer than `leaseMs`), and
 * at reconnect. Until then counts may be stale, and a slot released while
 * Redis was down is freed only once it answers again.
 *
 * Fencing. An instance whose lease lapsed (its process stalled longer than
 * the lease) may find its slots taken by others when it comes back. The
 * restore puts all of its state back (its connections are still open) but
 * reports what goes over the limits the hub last reserved with, and the
 * `onEvict` handler closes that many connections. Until their releases
 * arrive the counts are over the limits, so no new handshake is admitted on
 * the stale state; and no write of a lapsed instance lands before the
 * restore (each finds the lease lost and repairs first).
 *
 * One session serves one hub instance (the one it joined as); instance ids
 * must be unique among live instances.
 */
export class RedisSession {
  readonly keys: KeyLayout
  /** What every script runs with: the keys, and this instance's renewal period and stall grace. */
  readonly context: ScriptContext
  readonly leaseMs: number
  readonly local: LocalState = emptyLocalState()
  /** Set by the limiter on every reservation. */
  readonly limits: KnownLimits = {}
  readonly log: FastifyBaseLogger
  readonly #source: RedisSource
  readonly #health: SessionHealth
  #connecting: Promise<RedisConnection> | null = null
  #closing: Promise<void> | null = null
  #instanceId: string | null = null
  #left = false
  #timer: NodeJS.Timeout | null = null
  #ticking = false
  #dirty = false
  #inflight = 0
  #drained: (() => void) | null = null
  #syncing: Promise<void> | null = null
  #onEvict: EvictionHandler | null = null

  constructor (options: RedisRegistryOptions, log: FastifyBaseLogger) {
    this.#source = checkSource(options, 'registry')
    const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS
    if (!Number.isInteger(leaseMs) || leaseMs < MIN_LEASE_MS) {
      throw new OptionsError(`fastify-ws-hub: option "registry.leaseMs" must be an integer of at least ${MIN_LEASE_MS} (got ${String(leaseMs)})`)
    }
    this.leaseMs = leaseMs
    this.keys = keyLayout(registryPrefix(options.keyPrefix ?? DEFAULT_KEY_PREFIX, this.#source.cluster !== undefined))
    // The grace covers a reconnect after the stall and the renewal that follows it.
    this.context = { keys: this.keys, periodMs: Math.floor(leaseMs / 3), graceMs: leaseMs + RECONNECT_MAX_MS }
    this.log = log
    this.#health = new SessionHealth(log, leaseMs)
  }

  /** Who closes the connections a restore found over the limits; one handler, a later one replaces it. */
  onEvict (handler: EvictionHandler): void {
    this.#onEvict = handler
  }

  /** The joined instance, or null before `join` and after `leave`: releases and removals are then no-ops. */
  get active (): string | null {
    return this.#left ? null : this.#instanceId
  }

  /** False from a dropped connection or a failed renewal until Redis answers again (before the first connect: true). */
  get healthy (): boolean {
    return this.#health.healthy
  }

  /** The joined instance, for operations that need one. */
  member (op: string): string {
    if (this.#instanceId === null) throw new ClusterStateError(`${op}: call join() first; slots and connections are counted per instance`)
    if (this.#left) throw new ClusterStateError(`${op}: instance ${this.#instanceId} has left`)
    return this.#instanceId
  }

  /**
   * Takes (or renews) the lease of the one instance this session serves and
   * replaces whatever Redis held under its id (a previous process with the
   * same id left it) with the local state.
   */
  async join (instanceId: string): Promise<void> {
    if (this.#instanceId !== null && this.#instanceId !== instanceId) {
      throw new ClusterStateError(`RedisDirectory.join: already joined as ${this.#instanceId}; one cluster state serves one hub instance (asked to join as ${instanceId})`)
    }
    this.#instanceId = instanceId
    this.#left = false
    this.#dirty = true
    await this.repair()
    this.#startTimer()
  }

  /**
   * Removes an instance and everything it held at once. For this session's
   * own instance it also stops the lease timer; later releases and removals
   * (sockets still closing) are no-ops, as their slots are already free.
   */
  async leave (instanceId: string): Promise<void> {
    if (instanceId === this.#instanceId) {
      // Set before any await: a repair or write not yet sent sees it and
      // stays unsent; one already sent reaches Redis before LEAVE does.
      this.#left = true
      this.#stopTimer()
      clearLocalState(this.local)
      this.#dirty = false
    }
    const client = await this.connection()
    try {
      await runScript(client, LEAVE, this.context, [instanceId])
    } catch (err) {
      throw new ClusterStateError(`RedisDirectory.leave: could not remove instance ${instanceId} from ${describeSource(this.#source)}; its slots free themselves when its lease expires (within ${this.leaseMs} ms)`, { cause: err })
    }
  }

  async instances (): Promise<string[]> {
    const reply = await this.read('RedisDirectory.instances', {}, async (client) => runScript(client, INSTANCES, this.context, []))
    if (!Array.isArray(reply)) throw new ClusterStateError(`RedisDirectory.instances: unexpected reply from Redis (${typeof reply})`)
    return reply.filter((id): id is string => typeof id === 'string')
  }

  /**
   * Idempotent. Stops the lease timer and closes the connection the session
   * opened; it does not leave (the hub calls `leave` first). Closing without
   * leaving is what a crash looks like to the cluster: the slots are held
   * until the lease expires.
   */
  close (): Promise<void> {
    this.#closing ??= this.#shutdown()
    return this.#closing
  }

  async #shutdown (): Promise<void> {
    this.#stopTimer()
    const connecting = this.#connecting
    if (connecting === null) return
    let client: RedisConnection
    try {
      client = await connecting
    } catch {
      // The caller that started this connect got its error, and the failed
      // connection was closed then: nothing is open.
      return
    }
    await closeConnection(client)
  }

  /** The connection, opened on first use. A failed first connect is retried by the next call. */
  connection (): Promise<RedisConnection> {
    if (this.#closing !== null) return Promise.reject(new ClusterStateError('Redis cluster state: used after close()'))
    this.#connecting ??= this.#open()
    return this.#connecting
  }

  async #open (): Promise<RedisConnection> {
    const client = openConnection(this.#source, `ws-hub:cluster-state:${this.#instanceId ?? 'unjoined'}`)
    defineScripts(client)
    client.on('error', (err: unknown) => { this.#health.noteError(err) })
    client.on('close', () => this.#reachable(false, undefined))
    client.on('ready', () => {
      this.#reachable(true, undefined)
      // Renew (or repair, if writes failed while it was away) now rather than
      // at the next tick: after a stall the lease may have little time left.
      this.#kick()
    })
    if (isCluster(client)) {
      // A node lost may be our shard's master failing over. Replication is
      // asynchronous, so the promoted replica may lack the last writes
      // Redis acknowledged: restore this instance's state there (at once,
      // and each renewal period until it succeeds; a needless restore
      // changes nothing). Meanwhile the renewals fail and report the outage.
      client.on('-node', () => {
        this.#dirty = true
        this.#kick()
      })
    }
    try {
      await connectConnection(client)
      return client
    } catch (err) {
      this.#connecting = null
      await closeConnection(client)
      throw new ClusterStateError(`Redis cluster state: could not connect to ${describeSource(this.#source)}`, { cause: err })
    }
  }

  async read<T> (op: string, detail: Record<string, unknown>, run: (client: RedisConnection) => Promise<T>): Promise<T> {
    const client = await this.connection()
    try {
      return await run(client)
    } catch (err) {
      throw new ClusterStateError(`${op} failed${describeDetail(detail)}`, { cause: err })
    }
  }

  /**
   * A write of this instance's state. `changed` says whether the write
   * changed the local state; if so and the lease turns out lost, Redis is
   * restored from the local state, which already includes this write.
   */
  async run (op: string, script: Script, args: Array<string | number>, detail: Record<string, unknown>, hooks: WriteHooks, changed: () => boolean = () => true): Promise<void> {
    const code = await this.write(op, script, args, detail, hooks)
    if (code === LEASE_LOST && changed()) await this.repair()
  }

  /**
   * Sends one mutating script, ordered after any repair in progress. The
   * local state changes in `before`, after that wait and with no await
   * before the script is sent, so a repair's snapshot either includes a
   * write whose script Redis runs before the repair, or neither.
   */
  async write (op: string, script: Script, args: Array<string | number>, detail: Record<string, unknown>, hooks: WriteHooks): Promise<number> {
    while (this.#syncing !== null) await this.#syncing.then(ignore, ignore)
    hooks.before?.()
    this.#inflight++
    try {
      const client = await this.connection()
      const code = toCode(await runScript(client, script, this.context, args))
      hooks.after?.(code)
      return code
    } catch (err) {
      // Whether Redis applied it is unknown; the local state is right.
      this.#dirty = true
      throw new ClusterStateError(`${op} failed${describeDetail(detail)}; this instance's state is restored in Redis once it answers`, { cause: err })
    } finally {
      this.#inflight--
      if (this.#inflight === 0 && this.#drained !== null) {
        const wake = this.#drained
        this.#drained = null
        wake()
      }
    }
  }

  /** Replaces this instance's state in Redis with the local one; one at a time. */
  repair (): Promise<void> {
    this.#dirty = true
    this.#syncing ??= this.#sync().finally(() => { this.#syncing = null })
    return this.#syncing
  }

  async #sync (): Promise<void> {
    const client = await this.connection()
    // Writes already sent must reach Redis before the snapshot replaces them.
    if (this.#inflight > 0) await new Promise<void>((resolve) => { this.#drained = resolve })
    const id = this.#instanceId
    if (id === null || this.#left || this.#closing !== null) return
    const { ips, users, entries } = this.local
    const state = snapshot(this.local, this.limits)
    this.#dirty = false
    let reply: unknown
    try {
      reply = await runScript(client, SYNC, this.context, [id, this.leaseMs, state])
    } catch (err) {
      this.#dirty = true
      throw new ClusterStateError(`Redis cluster state: could not restore instance ${id} (${ips.size} IPs, ${users.size} users, ${entries.size} connections) in ${describeSource(this.#source)}`, { cause: err })
    }
    const eviction = parseEviction(reply)
    if (eviction.total > 0 || eviction.ips.size > 0 || eviction.users.size > 0) this.#evict(id, eviction)
  }

  /** Hands a restore's excess to the hub, before any write queued behind the restore is sent. */
  #evict (id: string, eviction: Eviction): void {
    const handler = this.#onEvict
    this.log.warn({
      instanceId: id, total: eviction.total, ips: Object.fromEntries(eviction.ips), users: Object.fromEntries(eviction.users)
    }, handler === null
      ? 'ws-hub: this instance\'s lease had lapsed and others took its slots; its connections over the limits stay open (no eviction handler), and nothing more is admitted until they close'
      : 'ws-hub: this instance\'s lease had lapsed and others took its slots; closing its connections over the limits')
    if (handler === null) return
    try {
      handler(eviction)
    } catch (err) {
      this.log.error({ err, instanceId: id }, 'ws-hub: the eviction handler threw; connections over the limits may stay open')
    }
  }

  #startTimer (): void {
    if (this.#timer !== null) return
    this.#timer = setInterval(() => this.#kick(), Math.floor(this.leaseMs / 3))
    // The lease must not keep a process alive that has nothing else to do.
    this.#timer.unref()
  }

  #stopTimer (): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }

  #kick (): void {
    this.#tick().catch((err: unknown) => {
      this.log.error({ err, instanceId: this.#instanceId }, 'ws-hub: Redis cluster state lease renewal failed unexpectedly')
    })
  }

  /** Renews the lease (reaping expired instances on the way), or repairs; reports failures itself. */
  async #tick (): Promise<void> {
    const id = this.#instanceId
    if (this.#ticking || id === null || this.#left || this.#closing !== null) return
    this.#ticking = true
    try {
      if (!this.#dirty) {
        const client = await this.connection()
        if (toCode(await runScript(client, REFRESH, this.context, [id, this.leaseMs])) === 1) {
          this.#reachable(true, undefined)
          return
        }
        this.log.warn({ instanceId: id, leaseMs: this.leaseMs },
          'ws-hub: this instance\'s lease in the Redis cluster state had lapsed (Redis restarted or was unreachable, or the process stalled); restoring its slots and connections')
      }
      await this.repair()
      this.#reachable(true, undefined)
    } catch (err) {
      this.#reachable(false, err)
    } finally {
      this.#ticking = false
    }
  }

  /** Reports reachability to the health log; after close(), a dropped connection is expected and not news. */
  #reachable (healthy: boolean, err: unknown): void {
    if (this.#closing === null) this.#health.report(healthy, err, this.#instanceId)
  }
}
