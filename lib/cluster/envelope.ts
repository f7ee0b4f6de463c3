/**
 * What travels between hub instances. The frame is serialized once by the
 * origin and carried as text, so receiving instances write it to their
 * sockets without parsing or re-encoding it.
 */
export type Target =
  | { kind: 'all' }
  | { kind: 'client', id: string }
  | { kind: 'user', userId: string }
  | { kind: 'topic', topic: string }

/** An instruction instead of a frame: close the target's sockets. */
export interface CloseControl {
  close: { code: number, reason: string }
}

export interface Envelope {
  /** Instance id of the sender; an instance ignores its own envelopes. */
  origin: string
  target: Target
  /** The serialized server frame, exactly as clients receive it ('' with a control). */
  frame: string
  control?: CloseControl
}

// A header line of JSON, a newline, then the frame. JSON.stringify escapes
// newlines inside strings, so the first newline always ends the header.
export function encodeEnvelope (envelope: Envelope): string {
  const header = envelope.control === undefined
    ? { o: envelope.origin, t: envelope.target }
    : { o: envelope.origin, t: envelope.target, c: envelope.control }
  return JSON.stringify(header) + '\n' + envelope.frame
}

export class EnvelopeError extends Error {
  override name = 'EnvelopeError'
}

export function decodeEnvelope (text: string): Envelope {
  const cut = text.indexOf('\n')
  if (cut === -1) throw new EnvelopeError('envelope has no header line')
  const header: unknown = JSON.parse(text.slice(0, cut))
  if (header === null || typeof header !== 'object') throw new EnvelopeError('envelope header is not an object')
  const { o, t, c } = header as { o?: unknown, t?: unknown, c?: unknown }
  if (typeof o !== 'string' || !isTarget(t)) throw new EnvelopeError('envelope header lacks origin or target')
  const envelope: Envelope = { origin: o, target: t, frame: text.slice(cut + 1) }
  if (c !== undefined) {
    if (!isCloseControl(c)) throw new EnvelopeError('envelope control is malformed')
    envelope.control = c
  }
  return envelope
}

function isCloseControl (value: unknown): value is CloseControl {
  if (value === null || typeof value !== 'object') return false
  const close = (value as { close?: unknown }).close
  if (close === null || typeof close !== 'object') return false
  const { code, reason } = close as { code?: unknown, reason?: unknown }
  return Number.isInteger(code) && typeof reason === 'string'
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
