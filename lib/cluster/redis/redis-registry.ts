import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { ConnectionInfo } from '../../connections/connection.js'
import type { ConnectionPage, Limits, Page, Registry, ReserveResult } from '../registry.js'
import { OptionsError, type RedisRegistryOptions } from '../../options/hub-options.js'
import { checkSource, closeConnection, describeSource, openConnection, type RedisSource } from './connect.js'
import { describeDetail, parseConnectionEntry, RegistryError, toCode } from './replies.js'

export { RegistryError }
import {
  ADD, INSTANCES, LEASE_LOST, LEAVE, LIST, REFRESH, RELEASE, REMOVE, RESERVE, SYNC, UPDATE, type LuaScript
} from './scripts.js'

/** Default for `keyPrefix`. */
export const DEFAULT_KEY_PREFIX = 'ws-hub:'
/** Default for `leaseMs`. */
export const DEFAULT_LEASE_MS = 15_000
/** Below this a lease would need refreshing faster than a loaded event loop can promise. */
export const MIN_LEASE_MS = 100

interface WriteHooks {
  /** Runs once the write is sure to be sent after any resynchronisation, before it is sent. */
  before?: () => void
  /** Runs with the script's reply, before anything else can observe this instance's state. */
  after?: (code: number) => void
}

// Waiting on a resynchronisation only orders writes after it; its failure is
// reported to whoever started it (the lease timer logs it).
const ignore = (): void => {}

/**
 * Cluster state in Redis, shared by every hub instance that uses the same
 * Redis and `keyPrefix`. Every operation is one atomic Lua script, so
 * concurrent reservations from any number of processes never exceed the
 * limits. Key layout and the scripts are in `lib/redis/scripts.ts`.
 *
 * Leases. `join` gives the instance a lease of `leaseMs`, renewed every
 * `leaseMs / 3` by an unref'd timer; slots and connections are counted per
 * instance. An instance that dies without `leave` (SIGKILL, a lost host)
 * stops renewing, and its lease expires at most `leaseMs` after its last
 * renewal. Every `reserve` first reaps expired instances, so their slots are
 * available to the very next reservation after expiry: at most `leaseMs`
 * after the crash. The rest of its state (connections, users, the counts
 * `ipCount`/`totalCount` read) goes at the next reap, which every live
 * instance runs each `leaseMs / 3`: at most `leaseMs + leaseMs / 3` after the
 * crash while any instance lives. `leave` removes the instance at once.
 *
 * Repair. The registry also keeps this instance's own slots and connections
 * in memory. Redis is brought back to that truth (one script replacing the
 * instance's state) whenever it may differ: after a write whose outcome is
 * unknown (Redis unreachable, timeout), after the lease lapsed (Redis
 * restarted empty, or the process stalled for longer than `leaseMs`), and at
 * reconnect. Until then counts may be stale, and a slot released while
 * Redis was down is freed only once it answers again.
 *
 * One registry serves one hub instance (the one it joined as); instance ids
 * must be unique among live instances. Redis Cluster is not supported (the
 * scripts touch keys they discover); a single Redis or Sentinel is.
 */
export class RedisRegistry implements Registry {
  readonly #source: RedisSource
  readonly #log: FastifyBaseLogger
  readonly #prefix: string
  readonly #leaseMs: number
  #connecting: Promise<Redis> | null = null
  #closing: Promise<void> | null = null
  #instanceId: string | null = null
  #left = false
  #timer: NodeJS.Timeout | null = null
  #ticking = false
  #healthy: boolean | null = null
  #lastError: unknown = undefined
  // This instance's own state: what Redis is repaired from.
  readonly #slots = new Map<string, number>()
  readonly #connections = new Map<string, ConnectionInfo>()
  #dirty = false
  #inflight = 0
  #drained: (() => void) | null = null
  #syncing: Promise<void> | null = null

  constructor (options: RedisRegistryOptions, log: FastifyBaseLogger) {
    this.#source = checkSource(options, 'registry')
    const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS
    if (!Number.isInteger(leaseMs) || leaseMs < MIN_LEASE_MS) {
      throw new OptionsError(`fastify-ws-hub: option "registry.leaseMs" must be an integer of at least ${MIN_LEASE_MS} (got ${String(leaseMs)})`)
    }
    this.#leaseMs = leaseMs
    this.#prefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX
    this.#log = log
  }

  async reserve (ip: string, limits: Limits): Promise<ReserveResult> {
    const id = this.#member('reserve')
    for (let attempt = 0; attempt < 2; attempt++) {
      const code = await this.#write('reserve', RESERVE, [id, ip, limits.perIp, limits.total], { ip }, {
        before: () => { this.#member('reserve') },
        after: (code) => { if (code === 0) this.#slots.set(ip, (this.#slots.get(ip) ?? 0) + 1) }
      })
      if (code === 0) return { ok: true }
      if (code === 1) return { ok: false, reason: 'ip_limit' }
      if (code === 2) return { ok: false, reason: 'total_limit' }
      if (code !== LEASE_LOST) throw new RegistryError(`RedisRegistry.reserve: unexpected reply ${code} from Redis`)
      // Our lease lapsed and our state was reaped: restore it, then count
      // this reservation against the restored state.
      await this.#repair()
    }
    throw new RegistryError(`RedisRegistry.reserve: instance ${id} has no lease in Redis even after restoring it (ip ${ip})`)
  }

  async release (ip: string): Promise<void> {
    if (this.#instanceId === null || this.#left) return
    const id = this.#instanceId
    let held = false
    await this.#run('release', RELEASE, [id, ip], { ip }, {
      before: () => {
        // Counted here before sending: if Redis does not answer, the repair
        // frees the slot there too.
        const count = this.#slots.get(ip) ?? 0
        held = count > 0
        if (count <= 1) this.#slots.delete(ip)
        else this.#slots.set(ip, count - 1)
      }
    }, () => held)
  }

  async ipCount (ip: string): Promise<number> {
    const client = await this.#connection()
    return await this.#read('ipCount', { ip }, async () => Number(await client.hget(this.#key('ips'), ip) ?? 0))
  }

  async totalCount (): Promise<number> {
    const client = await this.#connection()
    return await this.#read('totalCount', {}, async () => Number(await client.get(this.#key('total')) ?? 0))
  }

  async add (info: ConnectionInfo): Promise<void> {
    this.#own('add', info)
    const json = JSON.stringify(info)
    await this.#run('add', ADD, [info.instanceId, info.id, json], { clientId: info.id }, {
      before: () => {
        this.#member('add')
        this.#connections.set(info.id, info)
      }
    })
  }

  async update (info: ConnectionInfo): Promise<void> {
    if (this.#left) return
    this.#own('update', info)
    const json = JSON.stringify(info)
    let present = false
    await this.#run('update', UPDATE, [info.instanceId, info.id, json], { clientId: info.id }, {
      before: () => {
        present = this.#connections.has(info.id)
        if (present) this.#connections.set(info.id, info)
      }
    }, () => present)
  }

  async remove (id: string): Promise<void> {
    if (this.#instanceId === null || this.#left) return
    const instanceId = this.#instanceId
    let present = false
    await this.#run('remove', REMOVE, [instanceId, id], { clientId: id }, {
      before: () => { present = this.#connections.delete(id) }
    }, () => present)
  }

  async locate (clientId: string): Promise<string | null> {
    const client = await this.#connection()
    const json = await this.#read('locate', { clientId }, async () => client.hget(this.#key('conns'), clientId))
    if (json === null) return null
    return parseConnectionEntry(json, this.#log, clientId)?.instanceId ?? null
  }

  async locateUser (userId: string): Promise<string[]> {
    const client = await this.#connection()
    return await this.#read('locateUser', { userId }, async () => client.hkeys(this.#key(`user:${userId}`)))
  }

  async list (page: Page): Promise<ConnectionPage> {
    const limit = Math.max(0, Math.floor(page.limit))
    const offset = Math.max(0, Math.floor(page.offset))
    const client = await this.#connection()
    const reply = await this.#read('list', { limit, offset }, async () => LIST.run(client, [this.#prefix, limit, offset]))
    if (!Array.isArray(reply) || typeof reply[0] !== 'number') {
      throw new RegistryError(`RedisRegistry.list: unexpected reply from Redis (${typeof reply})`)
    }
    const connections: ConnectionInfo[] = []
    for (const json of reply.slice(1)) {
      const info = typeof json === 'string' ? parseConnectionEntry(json, this.#log, undefined) : null
      if (info !== null) connections.push(info)
    }
    return { count: reply[0], connections }
  }

  /**
   * Takes (or renews) the lease of the one instance this registry serves and
   * replaces whatever Redis held under its id (a previous process with the
   * same id left it) with this registry's state.
   */
  async join (instanceId: string): Promise<void> {
    if (this.#instanceId !== null && this.#instanceId !== instanceId) {
      throw new RegistryError(`RedisRegistry.join: already joined as ${this.#instanceId}; one registry serves one hub instance (asked to join as ${instanceId})`)
    }
    this.#instanceId = instanceId
    this.#left = false
    this.#dirty = true
    await this.#repair()
    this.#startTimer()
  }

  /**
   * Removes an instance and everything it held at once. For this registry's
   * own instance it also stops the lease timer; later releases and removals
   * (sockets still closing) are no-ops, as their slots are already free.
   */
  async leave (instanceId: string): Promise<void> {
    if (instanceId === this.#instanceId) {
      // Set before any await: a repair or write not yet sent sees it and
      // stays unsent; one already sent reaches Redis before LEAVE does.
      this.#left = true
      this.#stopTimer()
      this.#slots.clear()
      this.#connections.clear()
      this.#dirty = false
    }
    const client = await this.#connection()
    try {
      await LEAVE.run(client, [this.#prefix, instanceId])
    } catch (err) {
      throw new RegistryError(`RedisRegistry.leave: could not remove instance ${instanceId} from ${describeSource(this.#source)}; its slots free themselves when its lease expires (within ${this.#leaseMs} ms)`, { cause: err })
    }
  }

  async instances (): Promise<string[]> {
    const client = await this.#connection()
    const reply = await this.#read('instances', {}, async () => INSTANCES.run(client, [this.#prefix]))
    if (!Array.isArray(reply)) throw new RegistryError(`RedisRegistry.instances: unexpected reply from Redis (${typeof reply})`)
    return reply.filter((id): id is string => typeof id === 'string')
  }

  /**
   * Idempotent. Stops the lease timer and closes the connection the registry
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
    let client: Redis
    try {
      client = await connecting
    } catch {
      // The caller that started this connect got its error, and the failed
      // connection was closed then: nothing is open.
      return
    }
    await closeConnection(client)
  }

  #key (name: string): string {
    return this.#prefix + name
  }

  #member (op: string): string {
    if (this.#instanceId === null) throw new RegistryError(`RedisRegistry.${op}: call join() first; slots and connections are counted per instance`)
    if (this.#left) throw new RegistryError(`RedisRegistry.${op}: instance ${this.#instanceId} has left`)
    return this.#instanceId
  }

  #own (op: string, info: ConnectionInfo): void {
    const id = this.#member(op)
    if (info.instanceId !== id) {
      throw new RegistryError(`RedisRegistry.${op}: connection ${info.id} belongs to instance ${info.instanceId}, but this registry serves ${id}`)
    }
  }

  /** The connection, opened on first use. A failed first connect is retried by the next call. */
  #connection (): Promise<Redis> {
    if (this.#closing !== null) return Promise.reject(new RegistryError('RedisRegistry: used after close()'))
    this.#connecting ??= this.#open()
    return this.#connecting
  }

  async #open (): Promise<Redis> {
    const client = openConnection(this.#source, `ws-hub:registry:${this.#instanceId ?? 'unjoined'}`)
    client.on('error', (err: unknown) => { this.#lastError = err })
    client.on('close', () => this.#health(false, undefined))
    client.on('ready', () => {
      this.#health(true, undefined)
      // Writes failed while it was away: repair now rather than at the next tick.
      if (this.#dirty) this.#kick()
    })
    try {
      await client.connect()
      return client
    } catch (err) {
      this.#connecting = null
      await closeConnection(client)
      throw new RegistryError(`RedisRegistry: could not connect to ${describeSource(this.#source)}`, { cause: err })
    }
  }

  async #read<T> (op: string, detail: Record<string, unknown>, run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (err) {
      throw new RegistryError(`RedisRegistry.${op} failed${describeDetail(detail)}`, { cause: err })
    }
  }

  /**
   * A write of this instance's state. `changed` says whether the write
   * changed the local state; if so and the lease turns out lost, Redis is
   * restored from the local state, which already includes this write.
   */
  async #run (op: string, script: LuaScript, args: Array<string | number>, detail: Record<string, unknown>, hooks: WriteHooks, changed: () => boolean = () => true): Promise<void> {
    const code = await this.#write(op, script, args, detail, hooks)
    if (code === LEASE_LOST && changed()) await this.#repair()
  }

  /**
   * Sends one mutating script, ordered after any repair in progress. The
   * local state changes in `before`, after that wait and with no await
   * before the script is sent, so a repair's snapshot either includes a
   * write whose script Redis runs before the repair, or neither.
   */
  async #write (op: string, script: LuaScript, args: Array<string | number>, detail: Record<string, unknown>, hooks: WriteHooks): Promise<number> {
    while (this.#syncing !== null) await this.#syncing.then(ignore, ignore)
    hooks.before?.()
    this.#inflight++
    try {
      const client = await this.#connection()
      const code = toCode(await script.run(client, [this.#prefix, ...args]))
      hooks.after?.(code)
      return code
    } catch (err) {
      // Whether Redis applied it is unknown; the local state is right.
      this.#dirty = true
      throw new RegistryError(`RedisRegistry.${op} failed${describeDetail(detail)}; this instance's state is restored in Redis once it answers`, { cause: err })
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
  #repair (): Promise<void> {
    this.#dirty = true
    this.#syncing ??= this.#sync().finally(() => { this.#syncing = null })
    return this.#syncing
  }

  async #sync (): Promise<void> {
    const client = await this.#connection()
    // Writes already sent must reach Redis before the snapshot replaces them.
    if (this.#inflight > 0) await new Promise<void>((resolve) => { this.#drained = resolve })
    const id = this.#instanceId
    if (id === null || this.#left || this.#closing !== null) return
    const snapshot = JSON.stringify({
      ips: Object.fromEntries(this.#slots),
      conns: [...this.#connections.values()].map((info) => JSON.stringify(info))
    })
    this.#dirty = false
    try {
      await SYNC.run(client, [this.#prefix, id, this.#leaseMs, snapshot])
    } catch (err) {
      this.#dirty = true
      throw new RegistryError(`RedisRegistry: could not restore instance ${id} (${this.#slots.size} IPs, ${this.#connections.size} connections) in ${describeSource(this.#source)}`, { cause: err })
    }
  }

  #startTimer (): void {
    if (this.#timer !== null) return
    this.#timer = setInterval(() => this.#kick(), Math.floor(this.#leaseMs / 3))
    // The lease must not keep a process alive that has nothing else to do.
    this.#timer.unref()
  }

  #stopTimer (): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }

  #kick (): void {
    this.#tick().catch((err: unknown) => {
      this.#log.error({ err, instanceId: this.#instanceId }, 'ws-hub: Redis registry lease renewal failed unexpectedly')
    })
  }

  /** Renews the lease (reaping expired instances on the way), or repairs; reports failures itself. */
  async #tick (): Promise<void> {
    const id = this.#instanceId
    if (this.#ticking || id === null || this.#left || this.#closing !== null) return
    this.#ticking = true
    try {
      if (!this.#dirty) {
        const client = await this.#connection()
        if (toCode(await REFRESH.run(client, [this.#prefix, id, this.#leaseMs])) === 1) {
          this.#health(true, undefined)
          return
        }
        this.#log.warn({ instanceId: id, leaseMs: this.#leaseMs },
          'ws-hub: this instance\'s lease in the Redis registry had lapsed (Redis restarted or was unreachable, or the process stalled); restoring its slots and connections')
      }
      await this.#repair()
      this.#health(true, undefined)
    } catch (err) {
      this.#health(false, err)
    } finally {
      this.#ticking = false
    }
  }

  /** Logs each change of reachability once: warn with the cause, info on recovery. */
  #health (healthy: boolean, err: unknown): void {
    if (this.#closing !== null || healthy === this.#healthy) return
    const first = this.#healthy === null
    this.#healthy = healthy
    if (healthy) {
      this.#lastError = undefined
      if (!first) this.#log.info({ instanceId: this.#instanceId }, 'ws-hub: Redis registry reachable again')
      return
    }
    this.#log.warn({ err: err ?? this.#lastError ?? new RegistryError('connection to Redis closed'), instanceId: this.#instanceId, leaseMs: this.#leaseMs },
      'ws-hub: Redis registry unreachable; handshakes fail until it answers, then this instance\'s slots and connections are restored there')
  }
}
