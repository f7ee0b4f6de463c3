/** Reconnect delays: exponential growth, capped, with random jitter. */
export interface BackoffOptions {
  /** Delay before the first retry, before jitter. */
  initialDelayMs: number
  /** Cap on the delay, before jitter. */
  maxDelayMs: number
  /** Growth per attempt: the ceiling is `initialDelayMs * factor ** (attempt - 1)`. */
  factor: number
  /**
   * Fraction of the ceiling that is random, from 0 (none) to 1: the delay is
   * uniform in `[ceiling * (1 - jitter), ceiling]`, so clients cut off
   * together do not all come back at the same instant.
   */
  jitter: number
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  factor: 2,
  jitter: 0.5
})

/**
 * The delay before reconnect attempt `attempt` (1 for the first retry).
 * `random` returns a number in [0, 1); inject one to make delays repeatable.
 */
export function backoffDelay (attempt: number, options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const exponent = Math.max(0, Math.floor(attempt) - 1)
  const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * options.factor ** exponent)
  return Math.round(ceiling * (1 - options.jitter * random()))
}

/** Fills in defaults and checks the ranges once; throws a RangeError naming the bad field. */
export function normalizeBackoff (options: Partial<BackoffOptions>): BackoffOptions {
  const merged: BackoffOptions = { ...DEFAULT_BACKOFF, ...withoutUndefined(options) }
  const check = (ok: boolean, field: keyof BackoffOptions, rule: string): void => {
    if (!ok) throw new RangeError(`HubClient: reconnect.${field} must be ${rule} (got ${String(merged[field])})`)
  }
  check(Number.isFinite(merged.initialDelayMs) && merged.initialDelayMs >= 0, 'initialDelayMs', 'a number >= 0')
  check(Number.isFinite(merged.maxDelayMs) && merged.maxDelayMs >= merged.initialDelayMs, 'maxDelayMs', '>= initialDelayMs')
  check(Number.isFinite(merged.factor) && merged.factor >= 1, 'factor', 'a number >= 1')
  check(Number.isFinite(merged.jitter) && merged.jitter >= 0 && merged.jitter <= 1, 'jitter', 'from 0 to 1')
  return merged
}

function withoutUndefined<T extends object> (value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}
