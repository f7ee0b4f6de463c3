import type { IncomingMessage } from 'node:http'
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify'
import type { Limiter, ReserveResult } from '../cluster/limiter.js'
import type { FailureLog } from '../dispatch/failure-log.js'
import type { Identity, NormalizedOptions } from '../options/hub-options.js'
import { NoiseLog } from '../telemetry.js'
import { normalizeIp, peerGone } from './ip.js'
import { Slot } from './slot.js'
import { WindowCounter } from './rate-limit.js'

export interface HandshakeCounters {
  accepted: number
  rejectedOrigin: number
  rejectedHandshakeRate: number
  rejectedIpLimit: number
  rejectedTotalLimit: number
  rejectedUnauthenticated: number
  rejectedUserLimit: number
  rejectedRegistryDown: number
  abortedBeforeUpgrade: number
}

export function emptyHandshakeCounters (): HandshakeCounters {
  return {
    accepted: 0,
    rejectedOrigin: 0,
    rejectedHandshakeRate: 0,
    rejectedIpLimit: 0,
    rejectedTotalLimit: 0,
    rejectedUnauthenticated: 0,
    rejectedUserLimit: 0,
    rejectedRegistryDown: 0,
    abortedBeforeUpgrade: 0
  }
}

/** What a handshake that passed every check carries into the socket handler. */
export interface Admitted {
  ip: string
  identity: Identity | null
  /** Its IP's and user's limiter slots, released once when it ends. */
  slot: Slot
}

export interface AdmissionDeps {
  options: NormalizedOptions
  limiter: Limiter
  counters: HandshakeCounters
  /** Where failed releases are logged, rate-limited during an outage. */
  failures: FailureLog
  log: FastifyBaseLogger
}

type Refusal = {
  status: number
  code: string
  message: string
  counter: keyof HandshakeCounters
  retryAfter?: boolean
}

const STATUS_TEXT: Record<number, string> = { 401: 'Unauthorized', 403: 'Forbidden', 429: 'Too Many Requests', 503: 'Service Unavailable' }

/**
 * Every check a handshake passes before the upgrade, cheapest first, so a
 * refused client costs neither a slot nor a call to `authenticate`:
 * origin (403), handshake rate (429), per-IP and total slots (429/503),
 * authentication (401), per-user limit (429).
 */
export class Admission {
  readonly #deps: AdmissionDeps
  readonly #admitted = new WeakMap<IncomingMessage, Admitted>()
  readonly #handshakeRate: WindowCounter | null
  readonly #limits: { perIp: number, total: number }
  /** Refusals and authentication failures: one per handshake a client makes, so rate-limited. */
  readonly #noise: NoiseLog

  constructor (deps: AdmissionDeps) {
    this.#deps = deps
    this.#noise = new NoiseLog(deps.log)
    const rate = deps.options.handshakeRateLimit
    this.#handshakeRate = rate === false ? null : new WindowCounter(rate)
    this.#limits = { perIp: deps.options.maxConnectionsPerIp, total: deps.options.maxConnections }
  }

  /** The record of an admitted handshake; undefined for one that was not checked. */
  admitted (request: FastifyRequest): Admitted | undefined {
    return this.#admitted.get(request.raw)
  }

  /** Drops expired handshake-rate windows; called from a timer. */
  sweep (now: number): void {
    this.#handshakeRate?.sweep(now)
  }

  /** The `onRequest` hook of the WebSocket route. */
  readonly check = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    // A plain GET (no upgrade) reserves nothing; the HTTP handler answers 400.
    if (request.ws !== true) return
    const { options, limiter, counters } = this.#deps
    // A client that reset the connection right after its request has no
    // address left to key it by: counting it under a shared "unknown" key
    // would refuse it (and log it) as over that key's limits. It is gone:
    // count it as aborted, reserve nothing, and hang up so no upgrade follows.
    const socket = request.raw.socket as IncomingMessage['socket'] | undefined
    if (socket !== undefined && socket !== null && peerGone(socket)) {
      counters.abortedBeforeUpgrade++
      socket.destroy()
      return
    }
    // Read now, as the request arrives, and kept by Node for the socket's life.
    const ip = normalizeIp(request.ip, options.ipv6Prefix)

    const origin = this.#checkOrigin(request)
    if (origin !== null) return this.#refuse(request, reply, ip, origin)

    if (this.#handshakeRate !== null && !this.#handshakeRate.hit(ip, Date.now())) {
      return this.#refuse(request, reply, ip, {
        status: 429, code: 'handshake_rate', message: 'too many new connections from this address; slow down', counter: 'rejectedHandshakeRate', retryAfter: true
      })
    }

    let reserved: ReserveResult
    try {
      reserved = await limiter.reserve(ip, this.#limits)
    } catch (err) {
      // No limiter, no limits we can trust: refuse rather than admit blind.
      this.#deps.failures.record(err, { ip, action: 'reserve IP slot' })
      return this.#refuse(request, reply, ip, UNAVAILABLE)
    }
    if (!reserved.ok) {
      return this.#refuse(request, reply, ip, reserved.reason === 'ip_limit'
        ? { status: 429, code: 'ip_limit', message: `too many connections from this address (limit ${options.maxConnectionsPerIp})`, counter: 'rejectedIpLimit', retryAfter: true }
        : { status: 503, code: 'total_limit', message: `the server is at its connection limit (${options.maxConnections})`, counter: 'rejectedTotalLimit', retryAfter: true })
    }
    const slot = new Slot(limiter, ip, this.#deps.failures)
    const admitted: Admitted = { ip, identity: null, slot }
    // The TCP socket outlives every path (upgrade, aborted handshake, a later
    // refusal, a client that hung up while we awaited): release on its close.
    if (socket !== undefined && socket !== null) {
      if (socket.destroyed) {
        counters.abortedBeforeUpgrade++
        slot.release()
        return
      }
      socket.once('close', () => slot.release())
    }

    if (options.authenticate !== undefined) {
      const identity = await this.#authenticate(request)
      if (identity === null) {
        slot.release()
        return this.#refuse(request, reply, ip, { status: 401, code: 'unauthenticated', message: 'missing, invalid or expired credentials', counter: 'rejectedUnauthenticated' })
      }
      if (socket?.destroyed === true) {
        counters.abortedBeforeUpgrade++
        return
      }
      // Cluster-wide like the IP slots: a user's tabs on several instances
      // count together. The slot is held for the connection's life.
      const { userId } = identity
      let held: boolean
      try {
        held = await limiter.reserveUser(userId, options.maxConnectionsPerUser)
      } catch (err) {
        slot.release()
        this.#deps.failures.record(err, { userId, action: 'reserve user slot' })
        return this.#refuse(request, reply, ip, UNAVAILABLE)
      }
      if (!held) {
        slot.release()
        return this.#refuse(request, reply, ip, {
          status: 429, code: 'user_limit', message: `too many connections for this user (limit ${options.maxConnectionsPerUser})`, counter: 'rejectedUserLimit', retryAfter: true
        })
      }
      slot.holdUser(userId)
      // The client hung up while the user slot was being reserved: its
      // socket's close already released the IP slot, so free this one too.
      if (slot.released) {
        limiter.releaseUser(userId).catch((err: unknown) => this.#deps.failures.record(err, { userId, action: 'release user slot' }))
        counters.abortedBeforeUpgrade++
        return
      }
      admitted.identity = identity
    }
    this.#admitted.set(request.raw, admitted)
  }

  async #authenticate (request: FastifyRequest): Promise<Identity | null> {
    const authenticate = this.#deps.options.authenticate
    if (authenticate === undefined) return null
    try {
      const identity = await authenticate(request)
      if (identity === null || identity === undefined) return null
      if (typeof identity.userId !== 'string' || identity.userId === '') {
        this.#noise.record('authenticate:no_user_id', 'error', {}, 'ws-hub: authenticate returned an identity without a userId string; refusing')
        return null
      }
      return identity
    } catch (err) {
      // Many authenticate functions throw on a malformed token, which any
      // client can send per handshake: the stack is worth seeing, once per
      // interval.
      this.#noise.record('authenticate:threw', 'warn', { err }, 'ws-hub: authenticate threw; refusing the handshake')
      return null
    }
  }

  #checkOrigin (request: FastifyRequest): Refusal | null {
    const allowed = this.#deps.options.allowedOrigins
    if (allowed === null) return null
    const origin = request.headers.origin
    if (origin === undefined) {
      return this.#deps.options.allowMissingOrigin
        ? null
        : { status: 403, code: 'origin_required', message: 'this endpoint requires an Origin header', counter: 'rejectedOrigin' }
    }
    // Exact match only: prefix, suffix or pattern matching is how
    // `https://example.com.evil.net` gets in.
    if (allowed.has(origin)) return null
    return { status: 403, code: 'origin_not_allowed', message: 'origin not allowed', counter: 'rejectedOrigin' }
  }

  async #refuse (request: FastifyRequest, reply: FastifyReply, ip: string, refusal: Refusal): Promise<void> {
    this.#deps.counters[refusal.counter]++
    // Counted every time (ws_hub_handshakes_rejected_total), logged at most
    // once per interval and reason. A refusal the client earned (origin,
    // rates, per-IP and per-user limits, credentials) is info; one that says
    // the server is full or its registry is down is a warning.
    const level = refusal.status === 503 ? 'warn' : 'info'
    this.#noise.record(`refused:${refusal.code}`, level, { ip, reason: refusal.code }, 'ws-hub: handshake rejected')
    if (refusal.retryAfter === true) reply.header('retry-after', String(Math.ceil(this.#deps.options.retryAfterMs / 1000)))
    await reply.code(refusal.status).send({
      statusCode: refusal.status,
      error: STATUS_TEXT[refusal.status],
      code: refusal.code,
      message: refusal.message
    })
  }
}

const UNAVAILABLE: Refusal = {
  status: 503, code: 'registry_unavailable', message: 'the server cannot accept connections right now', counter: 'rejectedRegistryDown', retryAfter: true
}
