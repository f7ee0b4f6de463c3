/**
 * An `ordered` source is read by one instance at a time: the holder of its
 * lease. The lease moves when the holder dies (its expiry or its session
 * ends), so another instance takes over and reads on from the
 * acknowledged position.
 */
export interface Lease {
  /** Resolves true once this instance holds the lease; false when `signal` aborts first. */
  acquire: (signal: AbortSignal) => Promise<boolean>
  /** Called when a held lease is lost (not renewed in time, taken over): stop reading at once. */
  onLost: (handler: () => void) => void
  /** Whether this instance holds it now. */
  held: () => boolean
  /** Gives it up, so another instance takes over without waiting for the expiry. */
  release: () => Promise<void>
}

/** Builds the lease named `key` for a source that needs one. */
export type LeaseFactory = (key: string) => Lease
