import { EnvelopeError } from '../errors.js'
import type { ConnectionInfo } from './directory.js'

/** Who a frame is for. */
export type Target =
  | { kind: 'all' }
  | { kind: 'client', id: string }
  | { kind: 'user', userId: string }
  | { kind: 'topic', topic: string }

export type PeerTarget = Extract<Target, { kind: 'client' | 'user' }>

/** A connection as another instance describes it in a reply. */
export type RemoteConnection = ConnectionInfo

/**
 * A frame for the target's sockets. The frame is serialized once by the
 * origin and carried as text, so receiving instances write it to their
 * sockets without parsing or re-encoding it.
 */
export interface DeliverEnvelope {
  type: 'deliver'
  /** Instance id of the sender; an instance ignores its own envelopes. */
  origin: string
  target: Target
  frame: string
}

/** Close the target's sockets with this code. */
export interface CloseEnvelope {
  type: 'close'
  origin: string
  target: PeerTarget
  code: number
  reason: string
}

/** Asks the addressed instance to describe some of its connections. */
export interface QueryEnvelope {
  type: 'query'
  origin: string
  /** Unique per origin; the reply carries it back. */
  requestId: string
  clientIds: string[]
}

/** The answer to a query, addressed to the instance that asked. */
export interface ReplyEnvelope {
  type: 'reply'
  origin: string
  requestId: string
  connections: RemoteConnection[]
}

/** What travels between hub instances, discriminated on `type`. */
export type Envelope = DeliverEnvelope | CloseEnvelope | QueryEnvelope | ReplyEnvelope

// A deliver envelope is a header line of JSON, a newline, then the frame
// verbatim, so the frame is neither escaped nor parsed twice. JSON.stringify
// escapes newlines inside strings, so the first newline always ends the
// header. Every other type is one JSON line.
export function encodeEnvelope (envelope: Envelope): string {
  if (envelope.type === 'deliver') {
    return JSON.stringify({ y: 'deliver', o: envelope.origin, t: envelope.target }) + '\n' + envelope.frame
  }
  return JSON.stringify(envelope)
}

export function decodeEnvelope (text: string): Envelope {
  const cut = text.indexOf('\n')
  const head: unknown = JSON.parse(cut === -1 ? text : text.slice(0, cut))
  if (head === null || typeof head !== 'object') throw new EnvelopeError('envelope header is not an object')
  const h = head as Record<string, unknown>
  if (h.y === 'deliver') {
    if (cut === -1) throw new EnvelopeError('deliver envelope has no frame line')
    if (typeof h.o !== 'string' || !isTarget(h.t)) throw new EnvelopeError('deliver envelope lacks origin or target')
    return { type: 'deliver', origin: h.o, target: h.t, frame: text.slice(cut + 1) }
  }
  if (typeof h.origin !== 'string') throw new EnvelopeError('envelope lacks its origin')
  switch (h.type) {
    case 'close':
      if (!isTarget(h.target) || (h.target.kind !== 'client' && h.target.kind !== 'user') || !Number.isInteger(h.code) || typeof h.reason !== 'string') {
        throw new EnvelopeError('close envelope is malformed')
      }
      return { type: 'close', origin: h.origin, target: h.target, code: h.code as number, reason: h.reason }
    case 'query':
      if (typeof h.requestId !== 'string' || !isStringArray(h.clientIds)) throw new EnvelopeError('query envelope is malformed')
      return { type: 'query', origin: h.origin, requestId: h.requestId, clientIds: h.clientIds }
    case 'reply':
      if (typeof h.requestId !== 'string' || !Array.isArray(h.connections) || !h.connections.every(isRemoteConnection)) {
        throw new EnvelopeError('reply envelope is malformed')
      }
      return { type: 'reply', origin: h.origin, requestId: h.requestId, connections: h.connections }
    default:
      throw new EnvelopeError(`unknown envelope type ${JSON.stringify(h.type ?? h.y)}`)
  }
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
