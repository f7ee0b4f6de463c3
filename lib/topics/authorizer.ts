import type { FastifyBaseLogger } from 'fastify'
import type { Connection } from '../connections/connection.js'
import type { Authorize, AuthorizeRequest } from '../options/hooks.js'
import { FailureLog } from '../dispatch/failure-log.js'

export type Action = AuthorizeRequest['action']

/**
 * Runs the `authorize` option after the rules allowed an action. Without
 * the option it answers `true` synchronously, so the common path neither
 * allocates nor awaits (and a client's frames keep their order).
 */
export class Authorizer {
  readonly #authorize: Authorize | undefined
  readonly #instanceId: string
  readonly #failures: FailureLog

  constructor (authorize: Authorize | undefined, instanceId: string, log: FastifyBaseLogger) {
    this.#authorize = authorize
    this.#instanceId = instanceId
    // A hook that throws throws for every client: one line, then a summary.
    this.#failures = new FailureLog(log, 'ws-hub: authorize threw; the action was refused')
  }

  /** true, or a promise of whether the app allows it; a throw counts as false. */
  allows (connection: Connection, action: Action, topic?: string): true | Promise<boolean> {
    const authorize = this.#authorize
    if (authorize === undefined) return true
    const request: AuthorizeRequest = { action, client: connection.info(this.#instanceId) }
    if (topic !== undefined) request.topic = topic
    return this.#run(authorize, request)
  }

  async #run (authorize: Authorize, request: AuthorizeRequest): Promise<boolean> {
    try {
      return await authorize(request) === true
    } catch (err) {
      this.#failures.record(err, { clientId: request.client.id, action: request.action, topic: request.topic })
      return false
    }
  }
}
