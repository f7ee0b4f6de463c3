import type { ClusterState } from '../cluster/cluster-state.js'
import type { TapLike } from './tap-like.js'

export interface JoinOptions {
  /** A lease shorter than the backend's default, for the crash tests. */
  leaseMs?: number
}

/** Returns the cluster state one hub instance uses, already joined as `instanceId`. */
export type JoinCluster = (instanceId: string, options?: JoinOptions) => Promise<ClusterState>

/** How the limiter and directory suites get cluster state from a backend. */
export interface ClusterStateFactory {
  /**
   * One fresh namespace per test: every state `join` returns for it sees the
   * same cluster, and none from another test. The factory closes them (and
   * cleans up) when the test ends.
   */
  cluster: (t: TapLike) => Promise<JoinCluster>
  /**
   * A short lease the backend grants through `JoinOptions.leaseMs`. Absent
   * for a backend without leases (memory: one process cannot crash apart
   * from itself), which skips the tests of a crashed instance.
   */
  crashLeaseMs?: number
  /**
   * Makes a joined instance's lease lapse now, as a stall of its process
   * longer than the lease does: the instance keeps its local state and comes
   * back. Absent for a backend without leases, which skips the fencing tests.
   */
  lapse?: (state: ClusterState, instanceId: string) => Promise<void>
}

/** Polls until a condition holds; for state that settles on its own clock (a lease). */
export async function eventually (condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
