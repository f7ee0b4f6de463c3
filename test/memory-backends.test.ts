import t from 'tap'
import { MemoryBroker, MemoryBus } from '../lib/cluster/memory/memory-transport.js'
import { MemoryRegistry } from '../lib/cluster/memory/memory-registry.js'
import { brokerSuite } from '../lib/testing/transport-suite.js'
import { registrySuite } from '../lib/testing/registry-suite.js'

const bus = new MemoryBus()
brokerSuite(t, 'memory broker', { create: () => new MemoryBroker(bus) })

registrySuite(t, 'memory registry', {
  // One process's memory is one cluster: every instance shares the object.
  cluster: async () => {
    const shared = new MemoryRegistry()
    return async () => shared
  }
})
