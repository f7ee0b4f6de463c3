import type { Directory, DirectoryEntry, DirectoryPage, Page } from '../directory.js'
import { ClusterStateError } from '../../errors.js'

/**
 * One process's connections. Several hubs in one process (tests, a
 * multi-tenant server) may share it, each joined under its own instance id;
 * each adds and removes its own entries. Every map entry is deleted when
 * its last connection goes, so nothing outlives the connections.
 */
export class MemoryDirectory implements Directory {
  readonly #instances = new Set<string>()
  readonly #entries = new Map<string, DirectoryEntry>()
  /** userId -> instanceId -> that user's connections there. */
  readonly #users = new Map<string, Map<string, number>>()
  /** Client ids in order, rebuilt by the first `list` after a change rather than sorted on every call. */
  #order: string[] | null = null

  async join (instanceId: string): Promise<void> {
    this.#instances.add(instanceId)
  }

  /** Removes the instance and every entry it held, as the Redis directory does. */
  async leave (instanceId: string): Promise<void> {
    this.#instances.delete(instanceId)
    for (const entry of this.#entries.values()) {
      if (entry.instanceId === instanceId) this.#forget(entry)
    }
  }

  async instances (): Promise<string[]> {
    return [...this.#instances]
  }

  async add (entry: DirectoryEntry): Promise<void> {
    if (!this.#instances.has(entry.instanceId)) {
      throw new ClusterStateError(`MemoryDirectory.add: connection ${entry.id} belongs to instance ${entry.instanceId}, which has not joined (call join() first)`)
    }
    const previous = this.#entries.get(entry.id)
    if (previous !== undefined) this.#forget(previous)
    // A copy: the caller's object may change after it is added.
    const own: DirectoryEntry = { id: entry.id, ip: entry.ip, userId: entry.userId, connectedAt: entry.connectedAt, instanceId: entry.instanceId }
    this.#entries.set(own.id, own)
    this.#order = null
    if (own.userId !== null) {
      const where = this.#users.get(own.userId) ?? new Map<string, number>()
      where.set(own.instanceId, (where.get(own.instanceId) ?? 0) + 1)
      this.#users.set(own.userId, where)
    }
  }

  async remove (clientId: string): Promise<void> {
    const entry = this.#entries.get(clientId)
    if (entry !== undefined) this.#forget(entry)
  }

  async get (clientId: string): Promise<DirectoryEntry | null> {
    const entry = this.#entries.get(clientId)
    return entry === undefined ? null : { ...entry }
  }

  async locate (clientId: string): Promise<string | null> {
    return this.#entries.get(clientId)?.instanceId ?? null
  }

  async locateUser (userId: string): Promise<string[]> {
    return [...(this.#users.get(userId)?.keys() ?? [])]
  }

  async list (page: Page): Promise<DirectoryPage> {
    const limit = Math.max(0, Math.floor(page.limit))
    const offset = Math.max(0, Math.floor(page.offset))
    // Code-unit order, which matches Redis' byte order for ASCII ids.
    this.#order ??= [...this.#entries.keys()].sort((a, b) => a < b ? -1 : a > b ? 1 : 0)
    const entries: DirectoryEntry[] = []
    for (const id of this.#order.slice(offset, offset + limit)) {
      const entry = this.#entries.get(id)
      if (entry !== undefined) entries.push({ ...entry })
    }
    return { count: this.#entries.size, entries }
  }

  #forget (entry: DirectoryEntry): void {
    this.#entries.delete(entry.id)
    this.#order = null
    if (entry.userId === null) return
    const where = this.#users.get(entry.userId)
    if (where === undefined) return
    const left = (where.get(entry.instanceId) ?? 1) - 1
    if (left > 0) where.set(entry.instanceId, left)
    else where.delete(entry.instanceId)
    if (where.size === 0) this.#users.delete(entry.userId)
  }
}
