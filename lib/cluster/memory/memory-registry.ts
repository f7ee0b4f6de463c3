import type { ConnectionInfo } from '../../connections/connection.js'
import type { ConnectionPage, Limits, Page, Registry, ReserveResult } from '../registry.js'

/**
 * One process's state. `reserve` does its check and increment before its
 * first await, so it is atomic on Node's single thread.
 */
export class MemoryRegistry implements Registry {
  readonly #slotsByIp = new Map<string, number>()
  #slots = 0
  readonly #connections = new Map<string, ConnectionInfo>()
  readonly #usersConnections = new Map<string, number>()
  readonly #instances = new Set<string>()

  async reserve (ip: string, limits: Limits): Promise<ReserveResult> {
    const held = this.#slotsByIp.get(ip) ?? 0
    if (held >= limits.perIp) return { ok: false, reason: 'ip_limit' }
    if (this.#slots >= limits.total) return { ok: false, reason: 'total_limit' }
    this.#slotsByIp.set(ip, held + 1)
    this.#slots++
    return { ok: true }
  }

  async release (ip: string): Promise<void> {
    const held = this.#slotsByIp.get(ip)
    if (held === undefined) return
    if (held <= 1) this.#slotsByIp.delete(ip)
    else this.#slotsByIp.set(ip, held - 1)
    this.#slots--
  }

  async ipCount (ip: string): Promise<number> {
    return this.#slotsByIp.get(ip) ?? 0
  }

  async totalCount (): Promise<number> {
    return this.#slots
  }

  async add (info: ConnectionInfo): Promise<void> {
    this.#connections.set(info.id, info)
    if (info.userId !== null) {
      this.#usersConnections.set(info.userId, (this.#usersConnections.get(info.userId) ?? 0) + 1)
    }
  }

  async update (info: ConnectionInfo): Promise<void> {
    if (this.#connections.has(info.id)) this.#connections.set(info.id, info)
  }

  async remove (id: string): Promise<void> {
    const info = this.#connections.get(id)
    if (info === undefined) return
    this.#connections.delete(id)
    if (info.userId !== null) {
      const left = (this.#usersConnections.get(info.userId) ?? 1) - 1
      if (left <= 0) this.#usersConnections.delete(info.userId)
      else this.#usersConnections.set(info.userId, left)
    }
  }

  async locate (clientId: string): Promise<string | null> {
    return this.#connections.get(clientId)?.instanceId ?? null
  }

  async locateUser (userId: string): Promise<string[]> {
    if (!this.#usersConnections.has(userId)) return []
    const instances = new Set<string>()
    for (const info of this.#connections.values()) {
      if (info.userId === userId) instances.add(info.instanceId)
    }
    return [...instances]
  }

  async list (page: Page): Promise<ConnectionPage> {
    const all = [...this.#connections.values()]
    return { count: all.length, connections: all.slice(page.offset, page.offset + page.limit) }
  }

  async join (instanceId: string): Promise<void> {
    this.#instances.add(instanceId)
  }

  async leave (instanceId: string): Promise<void> {
    this.#instances.delete(instanceId)
  }

  async instances (): Promise<string[]> {
    return [...this.#instances]
  }

  async close (): Promise<void> {}
}
