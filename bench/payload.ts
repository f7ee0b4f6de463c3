/** Bytes of JSON in every measured message body (the issue asks for 64). */
export const PAYLOAD_BYTES = 64

/** The body every system broadcasts: `{"seq":<n>,"pad":"xx…"}`, exactly PAYLOAD_BYTES of JSON. */
export interface BenchPayload {
  seq: number
  pad: string
}

const EMPTY_LENGTH = JSON.stringify({ seq: 0, pad: '' }).length - 1

export function makePayload (seq: number): BenchPayload {
  const padLength = PAYLOAD_BYTES - EMPTY_LENGTH - String(seq).length
  if (padLength < 0) throw new Error(`seq ${seq} does not fit in a ${PAYLOAD_BYTES}-byte payload`)
  return { seq, pad: 'x'.repeat(padLength) }
}

/** The event name Socket.IO clients receive broadcasts under. */
export const SOCKETIO_EVENT = 'bench'
