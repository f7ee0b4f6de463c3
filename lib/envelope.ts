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

export interface Envelope {
  /** Instance id of the sender; an instance ignores its own envelopes. */
  origin: string
  target: Target
  /** The serialized server frame, exactly as clients receive it. */
  frame: string
}

// A header line of JSON, a newline, then the frame. JSON.stringify escapes
// newlines inside strings, so the first newline always ends the header.
export function encodeEnvelope (envelope: Envelope): string {
  return JSON.stringify({ o: envelope.origin, t: envelope.target }) + '\n' + envelope.frame
}

export class EnvelopeError extends Error {
  override name = 'EnvelopeError'
}

export function decodeEnvelope (text: string): Envelope {
  const cut = text.indexOf('\n')
  if (cut === -1) throw new EnvelopeError('envelope has no header line')
  const header: unknown = JSON.parse(text.slice(0, cut))
  if (header === null || typeof header !== 'object') throw new EnvelopeError('envelope header is not an object')
  const { o, t } = header as { o?: unknown, t?: unknown }
  if (typeof o !== 'string' || !isTarget(t)) throw new EnvelopeError('envelope header lacks origin or target')
  return { origin: o, target: t, frame: text.slice(cut + 1) }
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
