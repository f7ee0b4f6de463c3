import type { FastifyRequest } from 'fastify'
import type { ConnectionInfo } from '../cluster/directory.js'

/*
 * The function types users pass as options. They live apart from the option
 * schemas so that the modules these functions touch (a connection's
 * identity, say) can use them without importing the whole options module.
 */

export type RestAuth = (request: FastifyRequest) => boolean | Promise<boolean>

/** Who a connection belongs to. Extra claims are kept for your hooks. */
export interface Identity {
  userId: string
  /**
   * Topics the connection starts subscribed to (server-side: no topic rule
   * applies). One that is not a valid topic, or is in an undeclared
   * namespace, is logged and skipped.
   */
  topics?: string[]
  /**
   * Public data about the user (a display name, an avatar URL) that
   * presence lists with each of the connection's memberships and sends to
   * whoever may see the topic's presence: never a token or a secret. At
   * most 1024 bytes of JSON (`MAX_PRESENCE_INFO_BYTES`); a bigger one is
   * left out, with a warning in the log.
   */
  info?: unknown
  [claim: string]: unknown
}

/**
 * Runs before the upgrade. Return an identity to accept, `null` to refuse
 * with 401. A throw also refuses with 401 (and is logged).
 */
export type Authenticate = (request: FastifyRequest) => Promise<Identity | null> | Identity | null

/** Re-checks a live session; false (or a throw) closes the socket with 1008. */
export type Revalidate = (identity: Identity, clientId: string) => Promise<boolean> | boolean

/** What a client asks to do, as `authorize` sees it. */
export interface AuthorizeRequest {
  action: 'subscribe' | 'publish' | 'presence' | 'broadcast' | 'direct'
  /** Set for the topic actions. */
  topic?: string
  client: ConnectionInfo
}

/**
 * Runs after the topic rules allowed a client's action; false (or a throw,
 * logged) refuses it with `forbidden`.
 */
export type Authorize = (request: AuthorizeRequest) => boolean | Promise<boolean>
