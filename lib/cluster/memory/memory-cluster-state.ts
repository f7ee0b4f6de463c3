import type { ClusterState } from '../cluster-state.js'
import { MemoryDirectory } from './memory-directory.js'
import { MemoryLimiter } from './memory-limiter.js'

/** One process's cluster state: a limiter and a directory in memory, with nothing to close. */
export function createMemoryClusterState (): ClusterState {
  return {
    limiter: new MemoryLimiter(),
    directory: new MemoryDirectory(),
    close: async () => {}
  }
}
