import t from 'tap'
import { MemoryBroker, MemoryBus } from '../lib/brokers/memory-broker.js'
import { MemoryRegistry } from '../lib/registries/memory-registry.js'
import { brokerSuite } from './suites/broker-suite.js'
import { registrySuite } from './suites/registry-suite.js'

const bus = new MemoryBus()
brokerSuite(t, 'memory broker', { create: () => new MemoryBroker(bus) })

registrySuite(t, 'memory registry', {
  // One process's memory is one cluster: every instance shares the object.
  cluster: async () => {
    const shared = new MemoryRegistry()
    return async () => shared
  }
})
