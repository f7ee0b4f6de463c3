import { normalizeBackoff } from './backoff.js'
import { abandonSocket, closeSocket } from './close-socket.js'
import { ConnectWaiters } from './connect-waiters.js'
import { Emitter } from './emitter.js'
import { ClientErrorCodes, HubClientError } from './errors.js'
import { routeMessage, type FrameSink } from './frame-router.js'
import { Keepalive } from './keepalive.js'
import { CLIENT_DEFAULTS, checkUrls, duration, type HubClientOptions } from './options.js'
import { openSocket } from './open-socket.js'
import { PendingRequests, type Reply } from './pending-requests.js'
import { ReconnectPlan } from './reconnect-plan.js'
import { historyFrame, presenceFrame, publishFrame, type HistoryOptions, type PresencePage, type PublishOptions } from './request-frames.js'
import { StreamPositions } from './stream-positions.js'
import { SubscribedTopics } from './subscribed-topics.js'
import type {
  AckFrame,
  BroadcastFrame,
  DirectFrame,
  HistoryReplyFrame,
  HubClientEvents,
  HubClientState,
  InboundFrame,
  OutgoingClientFrame,
  PongFrame,
  PresenceReplyFrame,
  PublishAckFrame,
  ReplyMap,
  StreamPosition,
  SubscribeFrame,
  UnsubscribeFrame,
  WebSocketConstructor,
  WebSocketLike,
  WelcomeFrame
} from './types.js'

/** Reported as the close code when the client gives a silent socket up (RFC 6455: closed without a close frame). */
const ABNORMAL_CLOSURE = 1006

/**
 * A client of the hub's wire protocol, for browsers and Node.
 *
 * ```js
 * const client = new HubClient('wss://example.com/ws', { token })
 * client.on('message', (frame) => console.log(frame.from, frame.message))
 * await client.connect()
 * await client.subscribe('prices')
 * await client.broadcast('hello')
 * ```
 *
 * Every request carries an auto-increment `id` and returns a promise settled
 * by the matching `ack` (or `pong`), the matching `error` frame, the ack
 * timeout, or the socket closing first: no promise is left hanging.
 *
 * Events (`on` returns the function that removes the handler): every server
 * frame by its `type`, built in or sent by a service (`'rolled'`), `'*'` for
 * all frames, and the lifecycle events `'open'`, `'close'`, `'reconnecting'`,
 * `'state'` and `'invalid-frame'`; those names are taken, so a service should
 * not use them as frame types.
 *
 * With batching (`protocols: ['ws-hub.v1.batch']` or `?batch=1`), the frames
 * of a `{"type":"batch"}` frame are handled one by one, in order, as if each
 * had arrived alone; the batch itself is not an event.
 *
 * After a close the client reconnects with exponential backoff and jitter and
 * subscribes its topics again, except after `close()`, with
 * `reconnect: false`, or after a close code in `noReconnectCodes` (1008 and
 * 4000 by default: the server meant it). A connection whose server stops
 * answering pings is dropped and reported as a 1006 close. Given several
 * URLs (instances), each attempt after a close tries the next. In Node, a
 * client that is not closed keeps the process alive, as an open socket would.
 * On a history topic, a reconnect replays what was missed (`'recovered'`)
 * or says it cannot (`'reset'`); see StreamPositions.
 */
export class HubClient {
  readonly #plan: ReconnectPlan
  readonly #protocols: readonly string[]
  readonly #token: HubClientOptions['token']
  readonly #keepalive: Keepalive
  readonly #ackTimeoutMs: number
  readonly #openTimeoutMs: number
  readonly #WebSocket: WebSocketConstructor | undefined
  readonly #events = new Emitter()
  readonly #pending = new PendingRequests()
  readonly #topics = new SubscribedTopics()
  readonly #positions = new StreamPositions((type, payload) => this.#events.emit(type, payload))
  readonly #waiters = new ConnectWaiters()
  #socket: WebSocketLike | null = null
  #state: HubClientState = 'closed'
  #clientId: string | undefined
  #userId: string | undefined
  /** Whether this client has been welcomed before: the next welcome is a reconnect. */
  #welcomed = false
  #stopped = true
  #openTimer: ReturnType<typeof setTimeout> | undefined
  /** Bumped by every attempt and by close(), so an attempt that awaited can tell it is stale. */
  #generation = 0

  /** What the frames a socket receives act on. */
  readonly #sink: FrameSink = {
    welcome: (frame) => this.#onWelcome(frame),
    settle: (frame) => this.#pending.settle(frame),
    refuse: (frame) => this.#pending.refuse(frame),
    subscription: (frame) => {
      this.#topics.apply(frame)
      if (frame.type === 'unsubscribed') this.#positions.forget(frame.topic)
      else this.#positions.subscribed(frame)
    },
    publication: (frame) => this.#positions.accept(frame),
    reset: (frame) => this.#positions.reset(frame.topic, frame),
    emit: (type, payload) => this.#events.emit(type, payload)
  }

  /** `url`: the hub's WebSocket URL, or several (instances), tried in turn, one per attempt. */
  constructor (url: string | readonly string[], options: HubClientOptions = {}) {
    const urls = checkUrls(url)
    this.#protocols = Object.freeze([...(options.protocols ?? CLIENT_DEFAULTS.protocols)])
    this.#token = options.token
    const backoff = options.reconnect === false ? false : normalizeBackoff(options.reconnect ?? {})
    this.#plan = new ReconnectPlan(urls, backoff, options.noReconnectCodes ?? CLIENT_DEFAULTS.noReconnectCodes)
    const pingIntervalMs = duration(options.pingIntervalMs, CLIENT_DEFAULTS.pingIntervalMs, 'pingIntervalMs', 0)
    const pongTimeoutMs = duration(options.pongTimeoutMs, CLIENT_DEFAULTS.pongTimeoutMs, 'pongTimeoutMs', 1)
    this.#keepalive = new Keepalive(pingIntervalMs, async () => this.#request({ type: 'ping' }, 'pong', pongTimeoutMs), (reason) => this.#drop(reason))
    this.#ackTimeoutMs = duration(options.ackTimeoutMs, CLIENT_DEFAULTS.ackTimeoutMs, 'ackTimeoutMs', 1)
    this.#openTimeoutMs = duration(options.openTimeoutMs, CLIENT_DEFAULTS.openTimeoutMs, 'openTimeoutMs', 1)
    this.#WebSocket = options.WebSocket
  }

  /** The URL of the current attempt (or of the next, between attempts). */
  get url (): string { return this.#plan.url }
  /** 'closed' before `connect()` and after `close()` or a close that is not retried. */
  get state (): HubClientState { return this.#state }
  /** The id from the current connection's `welcome`; undefined while not open. */
  get clientId (): string | undefined { return this.#clientId }
  /** The authenticated user of the current connection, if the hub authenticates. */
  get userId (): string | undefined { return this.#userId }
  /**
   * Topics subscribed, by this client (acknowledged, and subscribed again
   * after every reconnect) or by the server (`subscribed` frames; for the
   * current connection only).
   */
  get topics (): string[] { return this.#topics.names() }

  /**
   * Opens the connection and resolves with the client id of the first
   * `welcome`. Failed attempts are retried with backoff (unless
   * `reconnect: false`); it rejects when the client gives up or `close()`
   * is called first.
   */
  connect (): Promise<string> {
    if (this.#state === 'open' && this.#clientId !== undefined) return Promise.resolve(this.#clientId)
    const waiting = this.#waiters.wait()
    if (this.#state === 'closed') {
      this.#stopped = false
      this.#plan.reset()
      this.#setState('connecting')
      this.#attemptNow()
    }
    return waiting
  }

  /**
   * Stops for good: no reconnect, pending requests rejected with `closed`.
   * Resolves once the socket has closed (waiting at most two seconds for
   * the server's answer). `connect()` may be called again later.
   */
  async close (code = 1000, reason = ''): Promise<void> {
    this.#stopped = true
    this.#generation++
    this.#plan.cancel()
    const socket = this.#socket
    const wasClosed = this.#state === 'closed'
    this.#detach()
    this.#pending.rejectAll(new HubClientError(ClientErrorCodes.closed, 'the client was closed', { closeCode: code }))
    this.#waiters.reject(new HubClientError(ClientErrorCodes.closed, 'the client was closed before it connected', { closeCode: code }))
    if (!wasClosed) {
      this.#events.emit('close', { code, reason, willReconnect: false })
      this.#setState('closed')
    }
    if (socket !== null) await closeSocket(socket, code, reason)
  }

  /** Listens to a server frame type, a custom frame type or a lifecycle event. Returns the function that stops listening. */
  on<K extends keyof HubClientEvents>(type: K, handler: (event: HubClientEvents[K]) => void): () => void
  on (type: string, handler: (frame: InboundFrame) => void): () => void
  on (type: string, handler: (event: never) => void): () => void {
    return this.#events.on(type, handler as (payload: unknown) => void)
  }

  /** Every connected client, this one included, receives `{"type":"message"}`. */
  broadcast (message: unknown): Promise<AckFrame> {
    const frame: BroadcastFrame = { type: 'broadcast', message }
    return this.#request(frame, 'ack', this.#ackTimeoutMs)
  }

  /** One client receives `{"type":"direct"}`; an unknown id rejects with `unknown_target`. */
  direct (clientId: string, message: unknown): Promise<AckFrame> {
    const frame: DirectFrame = { type: 'direct', target: clientId, message }
    return this.#request(frame, 'ack', this.#ackTimeoutMs)
  }

  /** Every connection of a user receives `{"type":"direct"}`. */
  sendToUser (userId: string, message: unknown): Promise<AckFrame> {
    const frame: DirectFrame = { type: 'direct', user: userId, message }
    return this.#request(frame, 'ack', this.#ackTimeoutMs)
  }

  /**
   * Resolves once the server has subscribed this connection; the topic is
   * then subscribed again after every reconnect. For a history topic,
   * `since` (a position the app kept, e.g. across page loads) asks for the
   * publications after it, as a reconnect does by itself.
   */
  async subscribe (topic: string, options: { since?: StreamPosition } = {}): Promise<AckFrame> {
    const ack = await this.#subscribeNow(topic, options.since)
    this.#topics.add(topic)
    return ack
  }

  /** Forgets the topic at once (a reconnect will not subscribe it again), then tells the server. */
  unsubscribe (topic: string): Promise<AckFrame> {
    this.#topics.delete(topic)
    this.#positions.forget(topic)
    const frame: UnsubscribeFrame = { type: 'unsubscribe', topic }
    return this.#request(frame, 'ack', this.#ackTimeoutMs)
  }

  /** The topic's subscribers receive `{"type":"publish"}`; the publisher need not be subscribed. A retry with the same `idempotencyKey` is not published twice. */
  publish (topic: string, message: unknown, options: PublishOptions = {}): Promise<PublishAckFrame> {
    return this.#request(publishFrame(topic, message, options), 'ack', this.#ackTimeoutMs)
  }

  /**
   * A history topic's kept publications after `since` (every kept one
   * without it), oldest first, at most `limit`, and where the topic stands.
   * They are returned, not emitted, and leave `position()` alone. Rejects
   * with `history_off` for a topic without history.
   */
  history (topic: string, options: HistoryOptions = {}): Promise<HistoryReplyFrame> {
    return this.#request(historyFrame(topic, options), 'history', this.#ackTimeoutMs)
  }

  /** Where this client stands in a history topic: the last publication emitted, or the offset it subscribed at. */
  position (topic: string): StreamPosition | undefined {
    return this.#positions.get(topic)
  }

  /**
   * One page of a presence topic's members, cluster-wide, with its
   * `clients` and `users` counts; pass `cursor` from the page for the next.
   * Rejects with `presence_off` for a topic without presence.
   */
  presence (topic: string, page: PresencePage = {}): Promise<PresenceReplyFrame> {
    return this.#request(presenceFrame(topic, page), 'presence', this.#ackTimeoutMs)
  }

  /** An app-level ping; resolves with the `pong`. */
  ping (): Promise<PongFrame> {
    return this.#request({ type: 'ping' }, 'pong', this.#ackTimeoutMs)
  }

  /**
   * Sends any frame (custom types go to the server's service) with an `id`
   * of the client's own, replacing one the frame had, and resolves on its
   * `ack` (a `ping` resolves on its `pong`).
   */
  request (frame: { type: 'ping' }): Promise<PongFrame>
  request (frame: OutgoingClientFrame): Promise<AckFrame>
  request (frame: OutgoingClientFrame): Promise<Reply> {
    return frame.type === 'ping' ? this.#request(frame, 'pong', this.#ackTimeoutMs) : this.#request(frame, 'ack', this.#ackTimeoutMs)
  }

  /** A subscribe carrying `since` when the client knows where it stands in the topic. */
  async #subscribeNow (topic: string, since?: StreamPosition): Promise<AckFrame> {
    const frame: SubscribeFrame = { type: 'subscribe', topic }
    const position = this.#positions.since(topic, since)
    if (position !== undefined) frame.since = position
    try {
      return await this.#request(frame, 'ack', this.#ackTimeoutMs)
    } catch (err) {
      this.#positions.abandon(topic)
      throw err
    }
  }

  #request<T extends Reply['type']> (frame: OutgoingClientFrame, expect: T, timeoutMs: number): Promise<ReplyMap[T]> {
    const socket = this.#socket
    if (this.#state !== 'open' || socket === null) {
      return Promise.reject(new HubClientError(ClientErrorCodes.notConnected, `cannot send "${frame.type}": the client is ${this.#state}`))
    }
    return this.#pending.send(socket, frame, expect, timeoutMs)
  }

  /**
   * Starts one attempt. If no socket can even be made (the token callback
   * threw, `ws` is not installed, the platform refused the protocols), the
   * client gives up and says why, rather than spin.
   */
  #attemptNow (): void {
    const generation = ++this.#generation
    this.#open(generation).catch((err: unknown) => {
      if (this.#stopped || generation !== this.#generation) return
      this.#giveUp(new HubClientError(ClientErrorCodes.connectFailed, `could not open a socket to ${this.url}: ${String(err)}`, { cause: err }))
    })
  }

  async #open (generation: number): Promise<void> {
    // close() or a newer attempt may have run while this one awaited.
    const socket = await openSocket({ url: this.url, protocols: this.#protocols, token: this.#token, WebSocket: this.#WebSocket },
      () => this.#stopped || generation !== this.#generation)
    if (socket === null) return
    this.#socket = socket
    // Events of a socket this client has since dropped are ignored.
    const current = (): boolean => this.#socket === socket
    socket.addEventListener('message', (event) => routeMessage(event.data, this.#sink, current))
    socket.addEventListener('close', (event) => {
      if (this.#socket === socket) this.#onGone(event.code ?? ABNORMAL_CLOSURE, event.reason ?? '')
    })
    // 'error' is always followed by 'close', which does the work; the
    // listener keeps `ws` from throwing it.
    socket.addEventListener('error', noop)
    this.#openTimer = setTimeout(() => this.#drop(`no welcome within ${this.#openTimeoutMs} ms`), this.#openTimeoutMs)
  }

  #onWelcome (frame: WelcomeFrame): void {
    const socket = this.#socket
    clearTimeout(this.#openTimer)
    this.#clientId = frame.clientId
    this.#userId = frame.userId
    this.#plan.reset()
    const reconnected = this.#welcomed
    this.#welcomed = true
    this.#setState('open')
    this.#keepalive.start(() => this.#socket === socket)
    // Subscriptions are sent before anything the application sends after
    // 'open', and 'open' waits for their acks.
    const topics = this.#topics.own()
    Promise.allSettled(topics.map(async (topic) => this.#subscribeNow(topic))).then((results) => {
      // A connection dropped meanwhile: its results are stale, and the next welcome resubscribes.
      if (this.#socket !== socket || this.#state !== 'open') return
      const failures = this.#topics.failures(topics, results)
      this.#events.emit('open', { clientId: frame.clientId, userId: frame.userId, reconnected, resubscribeFailures: failures })
      this.#waiters.resolve(frame.clientId)
    }, noop)
  }

  /**
   * Gives a silent socket up without waiting for a closing handshake that
   * may never come: `ws` sockets are terminated, browser sockets closed in
   * the background, and their late events ignored.
   */
  #drop (reason: string): void {
    const socket = this.#socket
    if (socket === null) return
    this.#onGone(ABNORMAL_CLOSURE, reason)
    abandonSocket(socket)
  }

  #onGone (code: number, reason: string): void {
    this.#detach()
    this.#topics.dropServerTopics()
    this.#positions.disconnected()
    this.#plan.closed()
    const retry = !this.#stopped && this.#plan.retries(code)
    this.#pending.rejectAll(new HubClientError(ClientErrorCodes.disconnected, `the connection closed (code ${code}${reason === '' ? '' : `: ${reason}`}) before an answer came`, { closeCode: code }))
    this.#events.emit('close', { code, reason, willReconnect: retry })
    if (this.#stopped) return
    const next = retry ? this.#plan.schedule(() => this.#attemptNow()) : null
    if (next === null) {
      this.#giveUp(new HubClientError(ClientErrorCodes.connectFailed, `the connection closed with code ${code}${reason === '' ? '' : ` (${reason})`} and is not retried`, { closeCode: code }))
      return
    }
    this.#setState('reconnecting')
    this.#events.emit('reconnecting', next)
  }

  #giveUp (error: HubClientError): void {
    this.#stopped = true
    this.#detach()
    this.#waiters.reject(error)
    this.#setState('closed')
  }

  /** Forgets the current socket and its timers. */
  #detach (): void {
    this.#socket = null
    this.#clientId = undefined
    this.#userId = undefined
    clearTimeout(this.#openTimer)
    this.#keepalive.stop()
  }

  #setState (state: HubClientState): void {
    const previous = this.#state
    if (previous === state) return
    this.#state = state
    this.#events.emit('state', { state, previous })
  }
}

function noop (): void {}
