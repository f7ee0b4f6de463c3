import type { FastifyBaseLogger } from 'fastify'
import type { ConnectionManager } from '../connections/connection-manager.js'
import type { Connection } from '../connections/connection.js'
import type { Transport } from '../cluster/transport.js'
import type { Directory } from '../cluster/directory.js'
import { DEFAULT_MAX_ENVELOPE_AGE_MS, envelopeAge, type Envelope, type PeerTarget, type RemoteConnection, type Target } from '../cluster/envelope.js'
import type { OutgoingFrame } from '../protocol/frames.js'
import { frameText } from '../protocol/serialize.js'
import { Conflator } from './conflator.js'
import { FailureLog } from './failure-log.js'
import { PeerQueries } from './peer-queries.js'
import type { TopicHistory } from '../history/topic-history.js'
import type { DeliveryReport, Dispatch, DispatchOptions, DispatcherCounters, PublishCallOptions } from './delivery.js'

export type { DeliveryReport, Dispatch, DispatchOptions, DispatcherCounters, PublishCallOptions }

export interface MessageDispatcherOptions {
  instanceId: string
  connections: ConnectionManager
  directory: Directory
  transport: Transport | null
  log: FastifyBaseLogger
  /** Default conflation window, ms. */
  conflateMs: number
  /** How long a question to another instance may take. */
  queryTimeoutMs: number
  /** Told how long each accepted transport publish took, in seconds. */
  onPublished?: (seconds: number) => void
  /** Envelopes from other instances older than this are dropped. Default 3000. */
  maxEnvelopeAgeMs?: number
  /** Applies server-side subscriptions to this instance's connections; without it, none are held here. */
  subscriptions?: LocalSubscriptions
  /** History topics and idempotency keys; without it, neither. */
  history?: TopicHistory | null
}

/** What the dispatcher needs of `lib/topics/subscriptions.ts`. */
export interface LocalSubscriptions {
  /** Returns how many of this instance's connections in the target it applied to. */
  apply: (target: PeerTarget, topic: string, subscribe: boolean) => number
}

/**
 * The one path every outgoing message takes: serialize once, write to the
 * local recipients, then hand the same text to the transport for the other
 * instances. Local delivery never waits on the transport.
 */
export class MessageDispatcher {
  readonly counters: DispatcherCounters = { brokerPublishFailures: 0, remoteEnvelopesIn: 0, staleEnvelopesDropped: 0 }
  readonly #instanceId: string
  readonly #connections: ConnectionManager
  readonly #directory: Directory
  readonly #transport: Transport | null
  readonly #failures: FailureLog
  readonly #maxEnvelopeAgeMs: number
  readonly #staleLog: FailureLog
  readonly #onPublished: (seconds: number) => void
  readonly #conflator = new Conflator()
  readonly #conflateMs: number
  readonly #queries: PeerQueries
  readonly #subscriptions: LocalSubscriptions | null
  readonly #history: TopicHistory | null
  #otherInstanceCount = 0
  #instancesCheckedAt = -Infinity

  constructor (options: MessageDispatcherOptions) {
    this.#instanceId = options.instanceId
    this.#connections = options.connections
    this.#directory = options.directory
    this.#transport = options.transport
    this.#failures = new FailureLog(options.log, 'ws-hub: cross-instance delivery failed; local clients were served, other instances were not')
    this.#onPublished = options.onPublished ?? noop
    this.#conflateMs = options.conflateMs
    this.#queries = new PeerQueries(options.queryTimeoutMs)
    this.#maxEnvelopeAgeMs = options.maxEnvelopeAgeMs ?? DEFAULT_MAX_ENVELOPE_AGE_MS
    this.#subscriptions = options.subscriptions ?? null
    this.#history = options.history ?? null
    this.#staleLog = new FailureLog(options.log, 'ws-hub: dropped envelopes older than maxEnvelopeAgeMs (held up by a stalled broker, or clocks out of step)', 10_000, 'warn')
  }

  /** `{"type":"server-broadcast","message":...}` to every client of every instance. */
  broadcast (message: unknown): Promise<DeliveryReport> {
    return this.send({ kind: 'all' }, { type: 'server-broadcast', message })
  }

  /** `{"type":"direct","from":"server","message":...}` to one client, wherever it is connected. */
  sendTo (clientId: string, message: unknown): Promise<DeliveryReport> {
    return this.send({ kind: 'client', id: clientId }, { type: 'direct', from: 'server', message })
  }

  /** `{"type":"direct","from":"server","user":...,"message":...}` to every connection of a user. */
  sendToUser (userId: string, message: unknown): Promise<DeliveryReport> {
    return this.send({ kind: 'user', userId }, { type: 'direct', from: 'server', user: userId, message })
  }

  /**
   * `{"type":"publish","topic":...,"from":"server","message":...}` to the
   * topic's subscribers. With `conflate`, only the latest message per
   * (topic, key) goes out per `throttleMs`; a held message reports
   * `conflated: true` and no recipients yet.
   */
  async publish (topic: string, message: unknown, options: PublishCallOptions = {}): Promise<DeliveryReport> {
    const key = options.idempotencyKey
    const send = (value: unknown): Promise<DeliveryReport> => this.publishFrame(topic, { type: 'publish', topic, from: 'server', message: value }, key)
    if (options.conflate === undefined) return send(message)
    let report: Promise<DeliveryReport> | null = null
    const sentNow = this.#conflator.submit(`${topic}\u0000${options.conflate}`, message, options.throttleMs ?? this.#conflateMs, (value) => {
      const pending = send(value)
      if (report === null) report = pending
      else pending.catch(() => {})
    })
    if (sentNow && report !== null) return report
    return { recipients: 0, remoteInstances: 0, conflated: true }
  }

  /**
   * A `publish` frame to a topic's subscribers. Into a history topic, or
   * with an idempotency key, it is appended to the store first, and the
   * stored text is what every instance delivers; otherwise as `send`.
   * Rejects when the store does (nothing was published then).
   */
  async publishFrame (topic: string, frame: OutgoingFrame, idempotencyKey?: string, strict = false): Promise<DeliveryReport> {
    const history = this.#history
    if (history === null || !history.routes(topic, idempotencyKey)) return await this.send({ kind: 'topic', topic }, frame, { strict })
    const appended = await history.publish(topic, frame, idempotencyKey)
    const report: DeliveryReport = { recipients: appended.recipients, remoteInstances: 0 }
    if (appended.position !== undefined) {
      report.offset = appended.position.offset
      report.epoch = appended.position.epoch
    }
    if (appended.text === null || this.#transport === null) return report
    const target: Target = { kind: 'topic', topic }
    const envelope: Envelope = { type: 'deliver', origin: this.#instanceId, target, frame: appended.text }
    if (appended.position !== undefined) envelope.position = appended.position
    report.remoteInstances = await this.#sendRemote(envelope, target, strict).remote
    return report
  }

  /** Messages replaced by newer ones under `conflate`. */
  get conflatedDrops (): number {
    return this.#conflator.dropped
  }

  /** Drops held conflated messages and fails open queries (shutdown). */
  stop (): void {
    this.#conflator.stop()
    this.#queries.stop()
  }

  /**
   * Sends any frame to a target and resolves once the transport took it (or
   * failed). For a client or user target, the report's `recipients` is 0
   * and `remoteInstances` 0 when no instance holds it.
   */
  async send (target: Target, frame: OutgoingFrame, options: DispatchOptions = {}): Promise<DeliveryReport> {
    const sent = this.dispatch(target, frame, options)
    return { recipients: sent.recipients, remoteInstances: await sent.remote }
  }

  /**
   * Sends any frame to a target: the local clients are written to before
   * this returns; the other instances are reached in the background (see
   * `Dispatch`), so a caller can answer without waiting on the transport.
   */
  dispatch (target: Target, frame: OutgoingFrame, options: DispatchOptions = {}): Dispatch {
    const text = frameText(frame)
    const recipients = this.deliverLocal(target, Buffer.from(text), options.exclude)
    if (this.#transport === null || (target.kind === 'client' && recipients > 0)) return { recipients, holders: NONE, remote: NONE }
    return { recipients, ...this.#sendRemote({ type: 'deliver', origin: this.#instanceId, target, frame: text }, target, options.strict === true) }
  }

  /**
   * Closes the target's sockets (a client or every connection of a user)
   * on whichever instances hold them. Resolves to how many were closed here
   * and how many other instances were asked.
   */
  async close (target: PeerTarget, code: number, reason: string): Promise<DeliveryReport> {
    const recipients = this.#closeLocal(target, code, reason)
    if (this.#transport === null) return { recipients, remoteInstances: 0 }
    if (target.kind === 'client' && recipients > 0) return { recipients, remoteInstances: 0 }
    return { recipients, remoteInstances: await this.#sendRemote({ type: 'close', origin: this.#instanceId, target, code, reason }, target).remote }
  }

  /**
   * Subscribes (or unsubscribes) the target's connections to a topic on
   * whichever instances hold them, like `close`. Resolves to how many
   * connections it applied to here and how many other instances were asked.
   */
  async subscription (target: PeerTarget, topic: string, subscribe: boolean): Promise<DeliveryReport> {
    const recipients = this.#subscriptions?.apply(target, topic, subscribe) ?? 0
    if (this.#transport === null || (target.kind === 'client' && this.#connections.get(target.id) !== undefined)) return { recipients, remoteInstances: 0 }
    const envelope: Envelope = { type: subscribe ? 'subscribe' : 'unsubscribe', origin: this.#instanceId, target, topic }
    return { recipients, remoteInstances: await this.#sendRemote(envelope, target).remote }
  }

  /**
   * Asks another instance to describe some of its connections (with their
   * topics, which only the holder knows). Rejects with a coded error when
   * it does not answer within `queryTimeoutMs`.
   */
  async describeRemote (instanceId: string, clientIds: string[]): Promise<RemoteConnection[]> {
    const transport = this.#transport
    if (transport === null || clientIds.length === 0) return []
    return await this.#queries.ask(instanceId, async (requestId) => {
      await transport.publish({ type: 'query', origin: this.#instanceId, requestId, clientIds }, [instanceId])
    })
  }

  /** Called by the transport for envelopes from other instances. */
  receive (envelope: Envelope): void {
    if (envelope.origin === this.#instanceId) return
    this.counters.remoteEnvelopesIn++
    // A broker that stalled can let envelopes through long after they were
    // sent (Redis runs what it buffered when it resumes; kafkajs retries a
    // request that already timed out). Their sender has counted them as
    // failed, and clients must not get old news as if it were fresh.
    const age = envelopeAge(envelope, Date.now())
    if (age !== undefined && age > this.#maxEnvelopeAgeMs) {
      this.counters.staleEnvelopesDropped++
      this.#staleLog.record(undefined, { origin: envelope.origin, type: envelope.type, ageMs: age, maxEnvelopeAgeMs: this.#maxEnvelopeAgeMs })
      return
    }
    switch (envelope.type) {
      case 'deliver':
        // A history topic's publication: ordered by its offset, gaps filled from the store.
        if (envelope.position !== undefined && envelope.target.kind === 'topic' && this.#history !== null) this.#history.receive(envelope.target.topic, envelope.position, envelope.frame)
        else this.deliverLocal(envelope.target, Buffer.from(envelope.frame), undefined)
        return
      case 'close':
        this.#closeLocal(envelope.target, envelope.code, envelope.reason)
        return
      case 'subscribe':
      case 'unsubscribe':
        this.#subscriptions?.apply(envelope.target, envelope.topic, envelope.type === 'subscribe')
        return
      case 'query':
        this.#answer(envelope.origin, envelope.requestId, envelope.clientIds)
        return
      case 'reply':
        this.#queries.answer(envelope.requestId, envelope.connections)
    }
  }

  #answer (origin: string, requestId: string, clientIds: string[]): void {
    const connections: RemoteConnection[] = []
    for (const id of clientIds) {
      const info = this.#connections.info(id)
      if (info !== undefined) connections.push(info)
    }
    this.#transport?.publish({ type: 'reply', origin: this.#instanceId, requestId, connections }, [origin]).catch((err: unknown) => {
      this.counters.brokerPublishFailures++
      this.#failures.record(err, { reply: requestId, to: origin })
    })
  }

  /**
   * Hands an envelope to the instances that need it: first asks the
   * directory which ones hold a client or user target, then publishes.
   * `remote` never rejects: the local clients already have the message, so
   * a transport or directory failure is counted and logged, not thrown at
   * the sender; `holders` rejects with the directory's failure, for callers
   * that must tell "nobody holds it" from "nobody can say".
   */
  #sendRemote (envelope: Envelope, target: Target, strict = false): Pick<Dispatch, 'holders' | 'remote'> {
    // undefined: a fan-out, published on a shared channel.
    const to = this.#holdersOf(target)
    const remote = to.then(async (ids) => {
      if (ids !== undefined && ids.length === 0) return 0
      await this.#timedPublish(envelope, ids)
      return ids?.length ?? await this.#otherInstances()
    }).catch((err: unknown) => {
      this.counters.brokerPublishFailures++
      // A strict caller (an event source) keeps the record to send again.
      if (strict) throw err
      this.#failures.record(err, { target })
      return 0
    })
    const holders = to.then((ids) => ids?.length ?? 0)
    // Marks it handled for callers that only want `remote`; whoever awaits
    // it still sees the rejection.
    holders.catch(noop)
    return { holders, remote }
  }

  async #holdersOf (target: Target): Promise<string[] | undefined> {
    if (target.kind === 'client') {
      const holder = await this.#directory.locate(target.id)
      return holder === null || holder === this.#instanceId ? [] : [holder]
    }
    if (target.kind === 'user') return (await this.#directory.locateUser(target.userId)).filter((id) => id !== this.#instanceId)
    return undefined
  }

  /**
   * How many other instances a fan-out reached (for a topic: at most that
   * many, as only those with subscribers get it). Cached for a second: the
   * count is a report, and asking the directory on every broadcast would
   * put a network round trip on the send path.
   */
  async #otherInstances (): Promise<number> {
    const now = Date.now()
    if (now - this.#instancesCheckedAt > INSTANCES_TTL_MS) {
      this.#otherInstanceCount = (await this.#directory.instances()).filter((id) => id !== this.#instanceId).length
      this.#instancesCheckedAt = now
    }
    return this.#otherInstanceCount
  }

  async #timedPublish (envelope: Envelope, to: string[] | undefined): Promise<void> {
    if (this.#transport === null) return
    const started = process.hrtime.bigint()
    await this.#transport.publish(envelope, to)
    this.#onPublished(Number(process.hrtime.bigint() - started) / 1e9)
  }

  #closeLocal (target: PeerTarget, code: number, reason: string): number {
    const connections = this.#connections
    if (target.kind === 'client') return connections.closeById(target.id, code, reason) ? 1 : 0
    let closed = 0
    for (const connection of connections.byUser(target.userId)) {
      connections.close(connection, code, reason)
      closed++
    }
    return closed
  }

  /** Writes already-serialized bytes to this instance's clients in the target. */
  deliverLocal (target: Target, data: Buffer, exclude: Connection | undefined): number {
    const connections = this.#connections
    switch (target.kind) {
      case 'client': {
        const connection = connections.get(target.id)
        return connection !== undefined && connection !== exclude && connections.write(connection, data) ? 1 : 0
      }
      case 'user':
        return writeAll(connections, connections.byUser(target.userId), data, exclude)
      case 'topic':
        return writeAll(connections, connections.subscribers(target.topic), data, exclude)
      case 'all':
        return writeAll(connections, connections.all(), data, exclude)
    }
  }
}

const INSTANCES_TTL_MS = 1000
const NONE: Promise<number> = Promise.resolve(0)

function noop (): void {}

function writeAll (connections: ConnectionManager, targets: Iterable<Connection>, data: Buffer, exclude: Connection | undefined): number {
  let recipients = 0
  // A write may remove a dead or slow connection from the set being walked;
  // Set and Map iteration is defined to tolerate that, so no copy is made.
  for (const connection of targets) {
    if (connection !== exclude && connections.write(connection, data)) recipients++
  }
  return recipients
}
