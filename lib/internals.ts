import type { ConnectionManager } from './connections/connection-manager.js'
import type { Heartbeat } from './connections/heartbeat.js'
import type { MessageDispatcher } from './dispatch/message-dispatcher.js'
import type { ClusterState } from './cluster/cluster-state.js'
import type { Transport } from './cluster/transport.js'
import type { WsHub } from './hub.js'

/**
 * The parts behind a hub's facade. Not exported by the package: the
 * project's own tests reach them through `internalsOf`, users cannot.
 */
export interface HubInternals {
  connections: ConnectionManager
  dispatcher: MessageDispatcher
  heartbeat: Heartbeat
  cluster: ClusterState
  transport: Transport | null
}

const registry = new WeakMap<WsHub, HubInternals>()

export function attachInternals (hub: WsHub, internals: HubInternals): void {
  registry.set(hub, internals)
}

export function internalsOf (hub: WsHub): HubInternals {
  const internals = registry.get(hub)
  if (internals === undefined) throw new Error('not a hub built by fastify-ws-hub')
  return internals
}
