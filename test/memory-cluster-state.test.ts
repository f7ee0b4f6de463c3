import t from 'tap'
import { createMemoryClusterState } from '../lib/cluster/memory/memory-cluster-state.js'
import type { ClusterStateFactory } from '../lib/testing/cluster-state-factory.js'
import { directorySuite } from '../lib/testing/directory-suite.js'
import { limiterSuite } from '../lib/testing/limiter-suite.js'
import { presenceSuite } from '../lib/testing/presence-suite.js'

const factory: ClusterStateFactory = {
  // One process's memory is one cluster: every hub in it shares the state,
  // each joined under its own id. No leases, so no crash tests.
  cluster: async () => {
    const shared = createMemoryClusterState()
    return async (instanceId) => {
      await shared.directory.join(instanceId)
      return shared
    }
  }
}

limiterSuite(t, 'memory limiter', factory)
directorySuite(t, 'memory directory', factory)
presenceSuite(t, 'memory presence', factory)
