import { isIPv4 } from 'node:net'

const MAPPED_PREFIX = '::ffff:'

/**
 * The key per-IP limits count under. An IPv4-mapped IPv6 address
 * (`::ffff:1.2.3.4`, what a dual-stack listener reports) is its IPv4 address,
 * so one client cannot hold two budgets.
 */
export function normalizeIp (ip: string | undefined): string {
  if (ip === undefined || ip === '') return 'unknown'
  const lower = ip.toLowerCase()
  if (lower.startsWith(MAPPED_PREFIX) && isIPv4(lower.slice(MAPPED_PREFIX.length))) {
    return lower.slice(MAPPED_PREFIX.length)
  }
  return lower
}
