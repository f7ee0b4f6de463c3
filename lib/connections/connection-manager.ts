import { WebSocket } from 'ws'
import type { FastifyBaseLogger } from 'fastify'
import { Connection, type ConnectionInfo } from './connection.js'
import { CloseCodes, type OutgoingFrame } from '../protocol/frames.js'
import { serializeFrame } from '../protocol/serialize.js'
import { Batcher, type BatchOptions } from './batcher.js'
import { probePreparedFrames } from './prepared-frame.js'
import type { SocketWriter } from './socket-writer.js'
import { createSocketWriter } from './create-socket-writer.js'

export interface ConnectionManagerOptions {
  instanceId: string
  maxBufferedBytes: number
  /** Batching for clients that opt in; false: nobody batches. */
  batch?: BatchOptions | false
  /** Build each frame once for all its recipients (lib/connections/prepared-frame.ts) instead of `socket.send`. Default true (see the README's benchmark section). */
  preparedFrames?: boolean
  /** Told of every change the cluster layer mirrors; called synchronously. */
  observer?: ConnectionObserver
  log: FastifyBaseLogger
}

/**
 * What the rest of the hub learns from the manager: the directory follows
 * connections, the transport follows which topics have a local subscriber
 * (interest routing), and presence follows each connection's topics.
 * Called synchronously, so an observer sees every change in order; it must
 * not throw.
 */
export interface ConnectionObserver {
  added: (connection: Connection) => void
  removed: (connection: Connection) => void
  /** The topic's first local subscriber arrived. */
  topicOpened: (topic: string) => void
  /** The topic's last local subscriber left. */
  topicClosed: (topic: string) => void
  /** A connection subscribed to a topic (after `topicOpened` for the first). */
  subscribed?: (connection: Connection, topic: string) => void
  /**
   * A connection left a topic: unsubscribed, or removed with its topics
   * (each told here before `removed`; after `topicClosed` for the last).
   */
  unsubscribed?: (connection: Connection, topic: string) => void
}

const NO_OBSERVER: ConnectionObserver = { added () {}, removed () {}, topicOpened () {}, topicClosed () {} }

export interface ListOptions {
  limit?: number
  offset?: number
}

export interface HubCounters {
  slowConsumerCloses: number
  deadSocketsRemoved: number
  messagesOut: number
  bytesOut: number
}

const DEFAULT_PAGE = 100

/**
 * The live sockets of this instance, indexed by id, user and topic, and the
 * one place where bytes are written to a socket (`write`).
 */
export class ConnectionManager {
  readonly instanceId: string
  readonly counters: HubCounters = { slowConsumerCloses: 0, deadSocketsRemoved: 0, messagesOut: 0, bytesOut: 0 }
  readonly #connections = new Map<string, Connection>()
  readonly #byUser = new Map<string, Set<Connection>>()
  readonly #byTopic = new Map<string, Set<Connection>>()
  readonly #byIp = new Map<string, number>()
  readonly #maxBufferedBytes: number
  readonly #observer: ConnectionObserver
  readonly #log: FastifyBaseLogger
  readonly #batcher: Batcher | null
  readonly #writer: SocketWriter

  constructor (options: ConnectionManagerOptions) {
    this.instanceId = options.instanceId
    this.#maxBufferedBytes = options.maxBufferedBytes
    this.#observer = options.observer ?? NO_OBSERVER
    this.#log = options.log
    const preparedFrames = options.preparedFrames ?? true
    this.#writer = createSocketWriter({ preparedFrames })
    if (preparedFrames && !probePreparedFrames().ok) {
      this.#log.warn({ reason: probePreparedFrames().reason }, 'ws-hub: prepared frames unavailable with this ws version, using socket.send')
    }
    const batch = options.batch ?? false
    this.#batcher = batch === false ? null : new Batcher(batch, (connection, data) => this.#send(connection, data))
  }

  /** Whether clients may opt in to batching. */
  get batching (): boolean {
    return this.#batcher !== null
  }

  /** Starts batching this client's frames (it opted in at connect). */
  startBatching (connection: Connection): void {
    if (this.#batcher !== null && connection.batch === null) connection.batch = []
  }

  /** Sends every queued batch now (shutdown). */
  flushBatches (): void {
    this.#batcher?.stop()
    // The last batches and anything corked this tick leave before the 1001 close frames.
    this.#writer.flush()
  }

  add (connection: Connection): void {
    this.#connections.set(connection.id, connection)
    this.#byIp.set(connection.ip, (this.#byIp.get(connection.ip) ?? 0) + 1)
    if (connection.userId !== null) addTo(this.#byUser, connection.userId, connection)
    this.#observer.added(connection)
  }

  /** Idempotent: the first call removes, later calls do nothing. */
  remove (connection: Connection): boolean {
    if (this.#connections.get(connection.id) !== connection) return false
    this.#connections.delete(connection.id)
    const left = (this.#byIp.get(connection.ip) ?? 1) - 1
    if (left <= 0) this.#byIp.delete(connection.ip)
    else this.#byIp.set(connection.ip, left)
    if (connection.userId !== null) removeFrom(this.#byUser, connection.userId, connection)
    for (const topic of connection.topics) this.#leaveTopic(topic, connection)
    this.#batcher?.forget(connection)
    this.#observer.removed(connection)
    return true
  }

  get (id: string): Connection | undefined {
    return this.#connections.get(id)
  }

  info (id: string): ConnectionInfo | undefined {
    return this.#connections.get(id)?.info(this.instanceId)
  }

  /** This instance's connections, in connection order. */
  list (options: ListOptions = {}): { count: number, connections: ConnectionInfo[] } {
    const offset = options.offset ?? 0
    const limit = options.limit ?? DEFAULT_PAGE
    const page: ConnectionInfo[] = []
    let index = 0
    for (const connection of this.#connections.values()) {
      if (index >= offset + limit) break
      if (index >= offset) page.push(connection.info(this.instanceId))
      index++
    }
    return { count: this.#connections.size, connections: page }
  }

  get count (): number {
    return this.#connections.size
  }

  /** Live connections per IP on this instance. */
  ipCount (ip: string): number {
    return this.#byIp.get(ip) ?? 0
  }

  ipCounts (): Record<string, number> {
    return Object.fromEntries(this.#byIp)
  }

  all (): IterableIterator<Connection> {
    return this.#connections.values()
  }

  byUser (userId: string): ReadonlySet<Connection> {
    return this.#byUser.get(userId) ?? EMPTY
  }

  subscribers (topic: string): ReadonlySet<Connection> {
    return this.#byTopic.get(topic) ?? EMPTY
  }

  /** Topics with at least one local subscriber. */
  topics (): IterableIterator<string> {
    return this.#byTopic.keys()
  }

  subscribe (connection: Connection, topic: string): void {
    if (connection.topics.has(topic)) return
    connection.topics.add(topic)
    let set = this.#byTopic.get(topic)
    if (set === undefined) {
      set = new Set()
      this.#byTopic.set(topic, set)
      this.#observer.topicOpened(topic)
    }
    set.add(connection)
    this.#observer.subscribed?.(connection, topic)
  }

  unsubscribe (connection: Connection, topic: string): boolean {
    if (!connection.topics.delete(topic)) return false
    this.#leaveTopic(topic, connection)
    return true
  }

  #leaveTopic (topic: string, connection: Connection): void {
    const set = this.#byTopic.get(topic)
    if (set === undefined || !set.delete(connection)) return
    if (set.size === 0) {
      this.#byTopic.delete(topic)
      this.#observer.topicClosed(topic)
    }
    this.#observer.unsubscribed?.(connection, topic)
  }

  /** Serializes and writes one frame to one local client. */
  send (id: string, frame: OutgoingFrame): boolean {
    const connection = this.#connections.get(id)
    if (connection === undefined) return false
    return this.write(connection, serializeFrame(frame))
  }

  /**
   * The one place bytes reach a socket. A dead socket found here is removed;
   * a client whose unsent bytes exceed `maxBufferedBytes` is cut off with
   * 4008 so it cannot hold memory or slow the others.
   */
  write (connection: Connection, data: Buffer): boolean {
    if (connection.closing) return false
    const socket = connection.socket
    if (socket.readyState !== WebSocket.OPEN) {
      this.counters.deadSocketsRemoved++
      this.remove(connection)
      return false
    }
    const unsent = this.#writer.unsentBytes(socket) + connection.batchBytes
    if (unsent > this.#maxBufferedBytes) {
      this.counters.slowConsumerCloses++
      this.#log.warn({ clientId: connection.id, bufferedBytes: unsent }, 'ws-hub: slow consumer closed')
      this.close(connection, CloseCodes.slowConsumer, 'slow consumer')
      return false
    }
    this.counters.messagesOut++
    if (connection.batch !== null && this.#batcher !== null) {
      this.#batcher.add(connection, data)
      return true
    }
    this.#send(connection, data)
    return true
  }

  #send (connection: Connection, data: Buffer): void {
    if (connection.closing || connection.socket.readyState !== WebSocket.OPEN) return
    this.#writer.write(connection.socket, data)
    this.counters.bytesOut += data.length
  }

  /** Starts the closing handshake and unregisters the client at once. */
  close (connection: Connection, code: number, reason: string): void {
    if (connection.closing) return
    connection.closing = true
    this.remove(connection)
    try {
      connection.socket.close(code, reason)
    } catch (err) {
      // close() throws only for a socket that is not open yet; drop it.
      this.#log.warn({ err, clientId: connection.id }, 'ws-hub: close failed, terminating')
      connection.socket.terminate()
    }
  }

  closeById (id: string, code: number, reason: string): boolean {
    const connection = this.#connections.get(id)
    if (connection === undefined) return false
    this.close(connection, code, reason)
    return true
  }
}

const EMPTY: ReadonlySet<Connection> = new Set()

function addTo<K> (index: Map<K, Set<Connection>>, key: K, connection: Connection): void {
  let set = index.get(key)
  if (set === undefined) {
    set = new Set()
    index.set(key, set)
  }
  set.add(connection)
}

function removeFrom<K> (index: Map<K, Set<Connection>>, key: K, connection: Connection): void {
  const set = index.get(key)
  if (set === undefined) return
  set.delete(connection)
  if (set.size === 0) index.delete(key)
}
