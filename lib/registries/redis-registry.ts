import type { FastifyBaseLogger } from 'fastify'
import type { ConnectionInfo } from '../connection.js'
import type { ConnectionPage, Limits, Page, Registry, ReserveResult } from './registry.js'
import type { RedisRegistryOptions } from '../options.js'

/** Placeholder until the Redis backend lands. */
export class RedisRegistry implements Registry {
  constructor (readonly options: RedisRegistryOptions, readonly log: FastifyBaseLogger) {}
  async reserve (_ip: string, _limits: Limits): Promise<ReserveResult> { throw new Error('not implemented') }
  async release (_ip: string): Promise<void> { throw new Error('not implemented') }
  async ipCount (_ip: string): Promise<number> { throw new Error('not implemented') }
  async totalCount (): Promise<number> { throw new Error('not implemented') }
  async add (_info: ConnectionInfo): Promise<void> { throw new Error('not implemented') }
  async update (_info: ConnectionInfo): Promise<void> { throw new Error('not implemented') }
  async remove (_id: string): Promise<void> { throw new Error('not implemented') }
  async locate (_clientId: string): Promise<string | null> { throw new Error('not implemented') }
  async locateUser (_userId: string): Promise<string[]> { throw new Error('not implemented') }
  async list (_page: Page): Promise<ConnectionPage> { throw new Error('not implemented') }
  async join (_instanceId: string): Promise<void> { throw new Error('not implemented') }
  async leave (_instanceId: string): Promise<void> { throw new Error('not implemented') }
  async instances (): Promise<string[]> { throw new Error('not implemented') }
  async close (): Promise<void> {}
}
