/**
 * Where a connection lives. Topics are not part of it: subscriptions stay
 * on the instance that holds the socket (the transport routes by them), and
 * a connection's topics are asked of that instance when someone wants them.
 */
export interface DirectoryEntry {
  id: string
  ip: string
  userId: string | null
  connectedAt: string
  /** The hub instance that holds the socket. */
  instanceId: string
}

/** The public view of a live connection: its directory entry and its topics, as only its instance knows them. */
export interface ConnectionInfo extends DirectoryEntry {
  topics: string[]
}

export interface Page {
  limit: number
  offset: number
}

export interface DirectoryPage {
  /** Connections in the whole cluster. */
  count: number
  entries: DirectoryEntry[]
}

/**
 * The cluster's members and connections: which instances are alive, where
 * each client and user is, and a paged listing.
 *
 * `join` comes first: `add` and `remove` act for the joined instance. An
 * instance stays listed until `leave`, or until its lease lapses (a crashed
 * instance), and then everything it held goes with it.
 */
export interface Directory {
  join: (instanceId: string) => Promise<void>
  leave: (instanceId: string) => Promise<void>
  /** Instances currently alive. */
  instances: () => Promise<string[]>
  add: (entry: DirectoryEntry) => Promise<void>
  remove: (clientId: string) => Promise<void>
  get: (clientId: string) => Promise<DirectoryEntry | null>
  /** The instance holding a client, or null when none does. */
  locate: (clientId: string) => Promise<string | null>
  /** The instances holding at least one connection of a user. */
  locateUser: (userId: string) => Promise<string[]>
  /** One page of every instance's connections, in a stable order (by client id). */
  list: (page: Page) => Promise<DirectoryPage>
}
