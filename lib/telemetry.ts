import diagnosticsChannel from 'node:diagnostics_channel'
import type { FastifyBaseLogger } from 'fastify'
import type { Connection } from './connections/connection.js'
import { ErrorCodes, isBuiltInType } from './protocol/frames.js'

/**
 * diagnostics_channel names. APM and OpenTelemetry instrumentations can
 * subscribe without the hub depending on them; with no subscriber a
 * publish costs one boolean check.
 */
export const CHANNELS = {
  connect: 'fastify-ws-hub:connect',
  disconnect: 'fastify-ws-hub:disconnect',
  message: 'fastify-ws-hub:message'
} as const

export interface ConnectEvent { clientId: string, ip: string, userId: string | null, instanceId: string }
export interface DisconnectEvent extends ConnectEvent { code: number, reason: string, durationMs: number }
export interface MessageEvent { clientId: string, userId: string | null, type: string, bytes: number }

const connectChannel = diagnosticsChannel.channel(CHANNELS.connect)
const disconnectChannel = diagnosticsChannel.channel(CHANNELS.disconnect)
const messageChannel = diagnosticsChannel.channel(CHANNELS.message)

// Label values are bounded: a client chooses its close code and its message
// type, and an unbounded label would let it grow the metrics without limit.
const KNOWN_CLOSE_CODES = new Set([1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 4000, 4008])

export function closeCodeLabel (code: number): string {
  return KNOWN_CLOSE_CODES.has(code) ? String(code) : 'other'
}

/** A client frame's type as a metric label: built-in types by name, everything else folded. */
export function messageTypeLabel (type: string | undefined): string {
  if (type === undefined) return 'invalid'
  return isBuiltInType(type) ? type : 'custom'
}

/**
 * Why a client's input broke the protocol, as a metric label: the hub's own
 * refusals (answered with an error frame) and ws' framing errors (answered
 * with a close code). A fixed set, so a client cannot grow the metrics.
 */
export const VIOLATION_REASONS = ['invalid_json', 'invalid_message', 'unsupported_binary', 'invalid_utf8', 'message_too_big', 'too_many_fragments', 'bad_frame'] as const
export type ViolationReason = typeof VIOLATION_REASONS[number]

/**
 * The violation an error frame's code reports; null for the codes that
 * answer well-formed input (an unknown target, a rate limit, a service's
 * own refusal), which are not malformed frames.
 */
export function errorCodeViolation (code: string): ViolationReason | null {
  switch (code) {
    case ErrorCodes.invalidJson: return 'invalid_json'
    case ErrorCodes.invalidMessage: return 'invalid_message'
    case ErrorCodes.unsupportedBinary: return 'unsupported_binary'
    default: return null
  }
}

/**
 * The violation behind an error ws emitted on a socket. ws names its
 * framing errors `WS_ERR_*` and has already closed the socket with the
 * matching code (1007, 1009, 1008, 1002); anything else (a write to a peer
 * that reset, a handler that threw) is not the client's malformed input.
 */
export function wsErrorViolation (err: unknown): ViolationReason | null {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code !== 'string' || !code.startsWith('WS_ERR_')) return null
  switch (code) {
    case 'WS_ERR_INVALID_UTF8': return 'invalid_utf8'
    case 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH':
    case 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH': return 'message_too_big'
    case 'WS_ERR_TOO_MANY_BUFFERED_PARTS': return 'too_many_fragments'
    // Bad opcodes, RSV bits, masking, control frame lengths, close codes.
    default: return 'bad_frame'
  }
}

/** How often a NoiseLog writes a line per key, at most. */
export const NOISE_LOG_INTERVAL_MS = 10_000

type NoiseLevel = 'debug' | 'info' | 'warn' | 'error'

/**
 * Log lines a client can cause at will, one per frame or per handshake
 * (malformed input, refused handshakes): written one each, they would let
 * any client fill the disk and drown the lines that matter. Per key, the
 * first is logged, then at most one line per `intervalMs` carrying how many
 * were left out since (`suppressedSinceLastLog`); the metrics count every
 * one. Keys come from a fixed set (reasons, never client data), so the
 * state stays bounded.
 */
export class NoiseLog {
  readonly #log: FastifyBaseLogger
  readonly #intervalMs: number
  readonly #keys = new Map<string, { loggedAt: number, suppressed: number }>()

  constructor (log: FastifyBaseLogger, intervalMs = NOISE_LOG_INTERVAL_MS) {
    this.#log = log
    this.#intervalMs = intervalMs
  }

  record (key: string, level: NoiseLevel, fields: Record<string, unknown>, message: string): void {
    const now = Date.now()
    const state = this.#keys.get(key)
    if (state !== undefined && now - state.loggedAt < this.#intervalMs) {
      state.suppressed++
      return
    }
    this.#log[level]({ ...fields, suppressedSinceLastLog: state?.suppressed ?? 0 }, message)
    this.#keys.set(key, { loggedAt: now, suppressed: 0 })
  }
}

/** Counts by bounded label, and the diagnostics_channel events. */
export class Telemetry {
  readonly opened = { total: 0 }
  readonly closedByCode = new Map<string, number>()
  readonly messagesInByType = new Map<string, number>()
  /** Every reason present from the start, so a scrape shows 0 rather than no series. */
  readonly violationsByReason = new Map<string, number>(VIOLATION_REASONS.map((reason) => [reason, 0]))
  readonly #instanceId: string
  readonly #violationLog: NoiseLog
  #violations = 0
  #publishObserver: ((seconds: number) => void) | null = null

  constructor (instanceId: string, log: FastifyBaseLogger) {
    this.#instanceId = instanceId
    this.#violationLog = new NoiseLog(log)
  }

  /** Protocol violations since start, every reason together. */
  get protocolViolations (): number {
    return this.#violations
  }

  /**
   * A client sent input that broke the protocol. Counted every time; logged
   * rate-limited, with who and why but no stack (it would only show the
   * hub's own parser) and no bytes of the input. At info, not warn: it is
   * the client's fault, the counter is the signal, and `level: 'warn'`
   * silences these lines.
   */
  protocolViolation (reason: ViolationReason, who: { clientId?: string, ip: string | undefined }): void {
    this.#violations++
    increment(this.violationsByReason, reason)
    this.#violationLog.record(reason, 'info', { reason, ...who }, 'ws-hub: protocol violation')
  }

  connectionOpened (connection: Connection): void {
    this.opened.total++
    if (connectChannel.hasSubscribers) {
      connectChannel.publish({ clientId: connection.id, ip: connection.ip, userId: connection.userId, instanceId: this.#instanceId } satisfies ConnectEvent)
    }
  }

  connectionClosed (connection: Connection, code: number, reason: string): void {
    increment(this.closedByCode, closeCodeLabel(code))
    if (disconnectChannel.hasSubscribers) {
      disconnectChannel.publish({
        clientId: connection.id,
        ip: connection.ip,
        userId: connection.userId,
        instanceId: this.#instanceId,
        code,
        reason,
        durationMs: Date.now() - connection.connectedAt
      } satisfies DisconnectEvent)
    }
  }

  /** `type` is undefined for frames that never parsed into a typed message. */
  messageIn (connection: Connection, type: string | undefined, bytes: number): void {
    increment(this.messagesInByType, messageTypeLabel(type))
    if (messageChannel.hasSubscribers) {
      messageChannel.publish({ clientId: connection.id, userId: connection.userId, type: type ?? 'invalid', bytes } satisfies MessageEvent)
    }
  }

  /** Set by the metrics module when a histogram wants broker publish timings. */
  observePublishes (observer: (seconds: number) => void): void {
    this.#publishObserver = observer
  }

  brokerPublished (seconds: number): void {
    this.#publishObserver?.(seconds)
  }
}

function increment (map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1)
}
