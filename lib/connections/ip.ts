import { isIPv4, isIPv6, type Socket } from 'node:net'

const MAPPED_PREFIX = '::ffff:'

/**
 * The key per-IP limits count under. An IPv4-mapped IPv6 address
 * (`::ffff:1.2.3.4`, what a dual-stack listener reports) is its IPv4 address,
 * so one client cannot hold two budgets. An IPv6 address is cut to its
 * network prefix (a /64 by default): one subscriber is routinely given a
 * whole /64, and would otherwise get 2^64 budgets.
 */
export function normalizeIp (ip: string | undefined, ipv6Prefix = 64): string {
  if (ip === undefined || ip === '') return 'unknown'
  const lower = ip.toLowerCase()
  if (lower.startsWith(MAPPED_PREFIX) && isIPv4(lower.slice(MAPPED_PREFIX.length))) {
    return lower.slice(MAPPED_PREFIX.length)
  }
  if (isIPv6(lower)) return ipv6Network(lower, ipv6Prefix)
  return lower
}

/**
 * Whether the client behind this socket hung up before the hub could see
 * who it was. Node asks the kernel for the peer's address on first use (and
 * keeps it); a client that reset the connection right after its request is
 * no longer known to the kernel by the time the request is parsed, so
 * `remoteAddress` (and Fastify's `request.ip`) is undefined while the local
 * end still has its own address. A Unix socket has neither and is never
 * taken for gone. Not captured earlier on purpose: reading the address at
 * accept time would keep it, and hide this signal that the client is gone.
 */
export function peerGone (socket: Socket): boolean {
  return socket.destroyed || (socket.remoteAddress === undefined && socket.localAddress !== undefined)
}

function ipv6Network (ip: string, prefix: number): string {
  const groups = expandIpv6(ip)
  if (groups === null) return ip
  const masked = groups.map((group, index) => {
    const bitsBefore = index * 16
    if (prefix >= bitsBefore + 16) return group
    if (prefix <= bitsBefore) return 0
    const keep = prefix - bitsBefore
    return group & (0xffff << (16 - keep)) & 0xffff
  })
  return `${masked.map((g) => g.toString(16)).join(':')}/${prefix}`
}

/** Eight 16-bit groups, or null for an address this code does not parse (zone ids, embedded IPv4). */
function expandIpv6 (ip: string): number[] | null {
  if (ip.includes('%') || ip.includes('.')) return null
  const [head = '', tail] = ip.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  const missing = 8 - left.length - right.length
  if (tail === undefined ? missing !== 0 : missing < 1) return null
  const parts = [...left, ...Array<string>(tail === undefined ? 0 : missing).fill('0'), ...right]
  return parts.map((part) => Number.parseInt(part, 16))
}
