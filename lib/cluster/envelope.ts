import { EnvelopeError } from '../errors.js'
import type { ConnectionInfo } from './directory.js'
import type { StreamPosition } from './history.js'

/** Who a frame is for. */
export type Target =
  | { kind: 'all' }
  | { kind: 'client', id: string }
  | { kind: 'user', userId: string }
  | { kind: 'topic', topic: string }

export type PeerTarget = Extract<Target, { kind: 'client' | 'user' }>

/** A connection as another instance describes it in a reply. */
export type RemoteConnection = ConnectionInfo

/** Default of the hub's `maxEnvelopeAgeMs`: how late an envelope may arrive and still be handled. */
export const DEFAULT_MAX_ENVELOPE_AGE_MS = 3_000

/**
 * The origin's send time, which every envelope type carries, so a receiver
 * can drop what arrives too late to be news (a publish Redis or Kafka held
 * through a stall, then let through). Milliseconds since the epoch by the
 * origin's clock. `encodeEnvelope` stamps it when absent, so it is always
 * present on an envelope that was decoded; in-process transports that never
 * encode may leave it out, and such an envelope is never judged stale.
 */
interface Stamped {
  sentAt?: number
}

/**
 * A frame for the target's sockets. The frame is serialized once by the
 * origin and carried as text, so receiving instances write it to their
 * sockets without parsing or re-encoding it.
 */
export interface DeliverEnvelope extends Stamped {
  type: 'deliver'
  /** Instance id of the sender; an instance ignores its own envelopes. */
  origin: string
  target: Target
  frame: string
  /**
   * A publication into a history topic: its offset and epoch, so a receiver
   * orders it without parsing the frame.
   */
  position?: StreamPosition
}

/** Close the target's sockets with this code. */
export interface CloseEnvelope extends Stamped {
  type: 'close'
  origin: string
  target: PeerTarget
  code: number
  reason: string
}

/** Asks the addressed instance to describe some of its connections. */
export interface QueryEnvelope extends Stamped {
  type: 'query'
  origin: string
  /** Unique per origin; the reply carries it back. */
  requestId: string
  clientIds: string[]
}

/** The answer to a query, addressed to the instance that asked. */
export interface ReplyEnvelope extends Stamped {
  type: 'reply'
  origin: string
  requestId: string
  connections: RemoteConnection[]
}

/**
 * Subscribe or unsubscribe the target's connections to a topic, on the
 * instances that hold them (server-side subscriptions).
 */
export interface SubscriptionEnvelope extends Stamped {
  type: 'subscribe' | 'unsubscribe'
  origin: string
  target: PeerTarget
  topic: string
}

/** What travels between hub instances, discriminated on `type`. */
export type Envelope = DeliverEnvelope | CloseEnvelope | QueryEnvelope | ReplyEnvelope | SubscriptionEnvelope

// A deliver envelope is a header line of JSON, a newline, then the frame
// verbatim, so the frame is neither escaped nor parsed twice. JSON.stringify
// escapes newlines inside strings, so the first newline always ends the
// header. Every other type is one JSON line. Every envelope is sent stamped:
// `sentAt` is the moment of encoding unless the envelope already has one.
export function encodeEnvelope (envelope: Envelope, sentAt: number = envelope.sentAt ?? Date.now()): string {
  if (envelope.type === 'deliver') {
    const p = envelope.position === undefined ? undefined : [envelope.position.offset, envelope.position.epoch]
    return JSON.stringify({ y: 'deliver', o: envelope.origin, t: envelope.target, s: sentAt, p }) + '\n' + envelope.frame
  }
  return JSON.stringify({ ...envelope, sentAt })
}

export function decodeEnvelope (text: string): Envelope {
  const cut = text.indexOf('\n')
  const head: unknown = JSON.parse(cut === -1 ? text : text.slice(0, cut))
  if (head === null || typeof head !== 'object') throw new EnvelopeError('envelope header is not an object')
  const h = head as Record<string, unknown>
  if (h.y === 'deliver') {
    if (cut === -1) throw new EnvelopeError('deliver envelope has no frame line')
    if (typeof h.o !== 'string' || !isTarget(h.t)) throw new EnvelopeError('deliver envelope lacks origin or target')
    if (!isTimestamp(h.s)) throw new EnvelopeError('deliver envelope lacks its send time')
    const envelope: DeliverEnvelope = { type: 'deliver', origin: h.o, target: h.t, frame: text.slice(cut + 1), sentAt: h.s }
    if (h.p !== undefined) {
      if (!isPosition(h.p)) throw new EnvelopeError('deliver envelope has a malformed position')
      envelope.position = { offset: h.p[0], epoch: h.p[1] }
    }
    return envelope
  }
  if (typeof h.origin !== 'string') throw new EnvelopeError('envelope lacks its origin')
  // An unstamped envelope could never be judged late, so it is refused like
  // any other malformed one rather than delivered as if it were fresh.
  const sentAt = h.sentAt
  if (!isTimestamp(sentAt)) throw new EnvelopeError('envelope lacks its send time')
  switch (h.type) {
    case 'close':
      if (!isPeerTarget(h.target) || !Number.isInteger(h.code) || typeof h.reason !== 'string') {
        throw new EnvelopeError('close envelope is malformed')
      }
      return { type: 'close', origin: h.origin, target: h.target, code: h.code as number, reason: h.reason, sentAt }
    case 'subscribe':
    case 'unsubscribe':
      if (!isPeerTarget(h.target) || typeof h.topic !== 'string') throw new EnvelopeError(`${h.type} envelope is malformed`)
      return { type: h.type, origin: h.origin, target: h.target, topic: h.topic, sentAt }
    case 'query':
      if (typeof h.requestId !== 'string' || !isStringArray(h.clientIds)) throw new EnvelopeError('query envelope is malformed')
      return { type: 'query', origin: h.origin, requestId: h.requestId, clientIds: h.clientIds, sentAt }
    case 'reply':
      if (typeof h.requestId !== 'string' || !Array.isArray(h.connections) || !h.connections.every(isRemoteConnection)) {
        throw new EnvelopeError('reply envelope is malformed')
      }
      return { type: 'reply', origin: h.origin, requestId: h.requestId, connections: h.connections, sentAt }
    default:
      throw new EnvelopeError(`unknown envelope type ${JSON.stringify(h.type ?? h.y)}`)
  }
}

/**
 * How old an envelope is by this host's clock: negative when the origin's
 * clock is ahead, undefined when it carries no send time. Hosts are assumed
 * NTP-synced: a skew of d ms makes every envelope look d ms older or younger.
 */
export function envelopeAge (envelope: Envelope, now: number): number | undefined {
  return envelope.sentAt === undefined ? undefined : now - envelope.sentAt
}

/**
 * Resolves once an envelope sent at `sentAt` is stale by this host's clock,
 * so every receiver with a clock in step drops it. A transport that does not
 * know whether a publish went out (a timeout, a reply lost with the
 * connection) waits for this before it rejects: a publish reported failed is
 * then never handled anywhere afterwards.
 */
export async function untilStale (sentAt: number, maxAgeMs: number): Promise<void> {
  const wait = sentAt + maxAgeMs + 1 - Date.now()
  if (wait <= 0) return
  await new Promise<void>((resolve) => setTimeout(resolve, wait))
}

function isTimestamp (value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
}

function isPosition (value: unknown): value is [number, string] {
  return Array.isArray(value) && value.length === 2 && Number.isSafeInteger(value[0]) && (value[0] as number) >= 1 && typeof value[1] === 'string'
}

function isStringArray (value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string')
}

function isRemoteConnection (value: unknown): value is RemoteConnection {
  if (value === null || typeof value !== 'object') return false
  const v = value as Record<string, unknown>
  return typeof v.id === 'string' && typeof v.ip === 'string' && typeof v.instanceId === 'string' &&
    typeof v.connectedAt === 'string' && (v.userId === null || typeof v.userId === 'string') && isStringArray(v.topics)
}

function isPeerTarget (value: unknown): value is PeerTarget {
  return isTarget(value) && (value.kind === 'client' || value.kind === 'user')
}

function isTarget (value: unknown): value is Target {
  if (value === null || typeof value !== 'object') return false
  const t = value as Record<string, unknown>
  switch (t.kind) {
    case 'all': return true
    case 'client': return typeof t.id === 'string'
    case 'user': return typeof t.userId === 'string'
    case 'topic': return typeof t.topic === 'string'
    default: return false
  }
}
