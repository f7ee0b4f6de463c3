import type { OutgoingFrame } from './frames.js'

/** Stamps a frame with the send time and encodes it once, for every recipient. */
export function serializeFrame (frame: OutgoingFrame): Buffer {
  return Buffer.from(frameText(frame))
}

export function frameText (frame: OutgoingFrame): string {
  return JSON.stringify({ ...frame, timestamp: new Date().toISOString() })
}
