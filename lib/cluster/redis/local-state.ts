/** This instance's own share of the cluster state, kept in memory: the truth Redis is repaired from. */
import type { DirectoryEntry } from '../directory.js'

/** This instance's own slots and connections: what Redis is repaired from. */
export interface LocalState {
  readonly ips: Map<string, number>
  readonly users: Map<string, number>
  readonly entries: Map<string, DirectoryEntry>
  /** "<topic> <clientId>" -> [topic, clientId, user key, member JSON]: this instance's presence members. */
  readonly presence: Map<string, [string, string, string, string]>
}

/** The limits the hub last reserved with; what a restore checks the local state against. */
export interface KnownLimits {
  perIp?: number
  total?: number
  perUser?: number
}

export function emptyLocalState (): LocalState {
  return { ips: new Map(), users: new Map(), entries: new Map(), presence: new Map() }
}

/** Forgets everything: the instance left, and Redis drops its state in the same step. */
export function clearLocalState (local: LocalState): void {
  local.ips.clear()
  local.users.clear()
  local.entries.clear()
  local.presence.clear()
}

/** The SYNC script's argument: the whole local state, which replaces the instance's state in Redis. */
export function snapshot (local: LocalState, limits: KnownLimits): string {
  const { ips, users, entries, presence } = local
  return JSON.stringify({
    ips: Object.fromEntries(ips),
    users: Object.fromEntries(users),
    conns: [...entries.values()].map((entry) => JSON.stringify(entry)),
    presence: [...presence.values()],
    limits
  })
}

/** Takes one from a count, deleting the key at zero; false when none was held. */
export function takeOne (counts: Map<string, number>, key: string): boolean {
  const held = counts.get(key) ?? 0
  if (held <= 1) counts.delete(key)
  else counts.set(key, held - 1)
  return held > 0
}
