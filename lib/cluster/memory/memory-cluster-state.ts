import type { ClusterState } from '../cluster-state.js'
import { MemoryDirectory } from './memory-directory.js'
import { MemoryLimiter } from './memory-limiter.js'
import { MemoryPresence } from './memory-presence.js'

/** One process's cluster state: a limiter, a directory and presence in memory, with nothing to close. */
export function createMemoryClusterState (): ClusterState {
  return {
    limiter: new MemoryLimiter(),
    directory: new MemoryDirectory(),
    presence: new MemoryPresence(),
    close: async () => {}
  }
}
