import type { BatchFrame, ErrorFrame, InboundFrame, PublicationFrame, ResetFrame, SubscribedFrame, UnsubscribedFrame, WelcomeFrame } from './types.js'
import type { Reply } from './pending-requests.js'

/** Where the router hands what a socket received. */
export interface FrameSink {
  welcome: (frame: WelcomeFrame) => void
  settle: (frame: Reply) => void
  refuse: (frame: ErrorFrame) => void
  /** The server says this connection's subscriptions changed (its own request, or the server's doing). */
  subscription: (frame: SubscribedFrame | UnsubscribedFrame) => void
  /** Whether a publication is new to the application; one already seen (same history offset) is not emitted at all. */
  publication: (frame: PublicationFrame) => boolean
  /** A history topic could not be kept gapless; the sink emits the `reset` event in place of the frame's own. */
  reset: (frame: ResetFrame) => void
  /** Events for the application: every frame by its type and as `'*'`, and `'invalid-frame'`. */
  emit: (type: string, payload: unknown) => void
}

/**
 * Turns one socket message into frames and hands each to the sink. A
 * `{"type":"batch"}` frame (sent to clients that opted in to batching) is
 * only a wrapper: its frames are handled one by one, in order, exactly as
 * if each had arrived alone, and the wrapper itself is never an event.
 *
 * `current` is asked before every frame: a handler may close the client
 * halfway through a batch, and the rest must then be ignored as frames of
 * a dropped socket are.
 */
export function routeMessage (data: unknown, sink: FrameSink, current: () => boolean): void {
  if (!current()) return
  let parsed: unknown
  try {
    parsed = JSON.parse(typeof data === 'string' ? data : String(data))
  } catch {
    sink.emit('invalid-frame', { data, error: 'not JSON' })
    return
  }
  if (!isFrame(parsed)) {
    sink.emit('invalid-frame', { data, error: 'not an object with a string type' })
    return
  }
  if (parsed.type !== 'batch') {
    route(parsed, sink)
    return
  }
  const messages = (parsed as Partial<BatchFrame>).messages
  if (!Array.isArray(messages)) {
    sink.emit('invalid-frame', { data, error: 'a batch without a messages array' })
    return
  }
  for (const inner of messages as unknown[]) {
    if (!current()) return
    // The hub never nests batches; unwrapping one level keeps a hostile
    // server from making the client recurse.
    if (isFrame(inner) && inner.type !== 'batch') route(inner, sink)
    else sink.emit('invalid-frame', { data: inner, error: 'a batch entry that is not a frame' })
  }
}

function isFrame (value: unknown): value is InboundFrame {
  return value !== null && typeof value === 'object' && typeof (value as { type?: unknown }).type === 'string'
}

function route (frame: InboundFrame, sink: FrameSink): void {
  switch (frame.type) {
    case 'welcome':
      sink.welcome(frame as WelcomeFrame)
      break
    case 'ack':
    case 'pong':
    case 'presence':
    case 'history':
      sink.settle(frame as Reply)
      break
    case 'publish':
      if (!sink.publication(frame as PublicationFrame)) return
      break
    case 'reset':
      sink.reset(frame as ResetFrame)
      sink.emit('*', frame)
      return
    case 'error':
      sink.refuse(frame as ErrorFrame)
      break
    case 'subscribed':
    case 'unsubscribed':
      sink.subscription(frame as SubscribedFrame | UnsubscribedFrame)
      break
  }
  sink.emit(frame.type, frame)
  sink.emit('*', frame)
}
