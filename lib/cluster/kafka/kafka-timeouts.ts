/** Bounded waits for the Kafka transport, so a dead cluster can never hang start, close or a publish. */
import type { FastifyBaseLogger } from 'fastify'
import { TransportError } from '../../errors.js'

// Each close step (consumer, producer, group deletion) gets this long, so a
// dead cluster cannot hang fastify.close().
export const CLOSE_STEP_MS = 5_000

export function message (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

export function asError (err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}

export async function withTimeout<T> (work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new TransportError(`${what} took longer than ${ms} ms`)), ms)
  })
  // Whichever loses the race must not become an unhandled rejection.
  work.catch(() => {})
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Awaits a cleanup step within a bound; a failure is logged, not thrown. */
export async function settle (work: Promise<unknown>, ms: number, what: string, log: FastifyBaseLogger): Promise<void> {
  try {
    await withTimeout(work, ms, what)
  } catch (err) {
    log.warn({ err }, `ws-hub: kafka ${what} failed`)
  }
}
