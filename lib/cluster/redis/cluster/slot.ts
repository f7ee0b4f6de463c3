/**
 * Redis Cluster's key slot, computed here so the transport can tell which
 * master serves a channel (from the client's slot map) without a round trip:
 * CRC16/XMODEM of the name, or of its hash tag (the bytes between the first
 * `{` and the first `}` after it, when there are any), modulo 16384.
 */
export const SLOT_COUNT = 16_384

const TABLE = (() => {
  const table = new Uint16Array(256)
  for (let i = 0; i < 256; i++) {
    let crc = i << 8
    for (let bit = 0; bit < 8; bit++) crc = (crc & 0x8000) !== 0 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
    table[i] = crc
  }
  return table
})()

export function crc16 (bytes: Uint8Array): number {
  let crc = 0
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ (TABLE[((crc >> 8) ^ byte) & 0xff] ?? 0)
  return crc
}

export function keySlot (name: string): number {
  const bytes = Buffer.from(name)
  // `{` and `}` are single bytes in UTF-8, so byte offsets find them.
  const open = bytes.indexOf(0x7b)
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1)
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) % SLOT_COUNT
  }
  return crc16(bytes) % SLOT_COUNT
}
