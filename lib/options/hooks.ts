import type { FastifyRequest } from 'fastify'

/*
 * The function types users pass as options. They live apart from the option
 * schemas so that the modules these functions touch (a connection's
 * identity, say) can use them without importing the whole options module.
 */

export type RestAuth = (request: FastifyRequest) => boolean | Promise<boolean>

/** Who a connection belongs to. Extra claims are kept for your hooks. */
export interface Identity {
  userId: string
  [claim: string]: unknown
}

/**
 * Runs before the upgrade. Return an identity to accept, `null` to refuse
 * with 401. A throw also refuses with 401 (and is logged).
 */
export type Authenticate = (request: FastifyRequest) => Promise<Identity | null> | Identity | null

/** Re-checks a live session; false (or a throw) closes the socket with 1008. */
export type Revalidate = (identity: Identity, clientId: string) => Promise<boolean> | boolean
