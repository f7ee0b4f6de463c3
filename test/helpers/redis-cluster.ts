import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { type TapLike } from './redis-server.js'

const run = promisify(execFile)
const SCRIPT = fileURLToPath(new URL('../../scripts/redis-cluster.sh', import.meta.url))
const HOST = '127.0.0.1'
const NODE_COUNT = 6

export interface ClusterAddress {
  host: string
  port: number
}

/**
 * The shared Redis Cluster the tests run against (REDIS_CLUSTER_NODES, as
 * `.ci/run` exports it: `127.0.0.1:17000,127.0.0.1:17001,...`). Unset: the
 * file is skipped, except under CI, where skipping would let the cluster
 * support ship untested.
 */
export function redisClusterNodes (t: TapLike): ClusterAddress[] | null {
  const value = process.env.REDIS_CLUSTER_NODES
  if (value !== undefined && value !== '') return parseAddresses(value)
  if (process.env.CI === 'true') {
    t.fail('REDIS_CLUSTER_NODES is not set but CI=true: the Redis backends must be tested on a cluster in CI (bash scripts/redis-cluster.sh start prints it)')
  } else {
    t.plan(0, 'REDIS_CLUSTER_NODES not set')
  }
  return null
}

function parseAddresses (value: string): ClusterAddress[] {
  return value.split(',').map((entry) => {
    const match = /^(.+):(\d+)$/.exec(entry.trim())
    if (match?.[1] === undefined || match[2] === undefined) {
      throw new Error(`REDIS_CLUSTER_NODES: "${entry}" is not host:port (value: "${value}")`)
    }
    return { host: match[1], port: Number(match[2]) }
  })
}

/** One line of CLUSTER NODES. */
export interface ClusterNode {
  id: string
  host: string
  port: number
  role: 'master' | 'replica'
  /** The master's id, for a replica. */
  masterId: string | null
  /** Flagged `fail` or `fail?` by the node that answered. */
  failed: boolean
  /** The answering node's link to it is up. */
  connected: boolean
  /** Inclusive slot ranges it serves. */
  slots: Array<[number, number]>
}

export function parseClusterNodes (text: string): ClusterNode[] {
  return text.trim().split('\n').filter((line) => line.trim() !== '').map((line) => {
    // id addr flags master ping-sent pong-recv config-epoch link-state slot...
    const [id = '', addr = '', flags = '', master = '-', , , , link = '', ...slotFields] = line.trim().split(' ')
    const match = /^(.*):(\d+)@/.exec(addr)
    if (match?.[1] === undefined || match[2] === undefined) throw new Error(`unexpected CLUSTER NODES line: ${line}`)
    const flagList = flags.split(',')
    const slots: Array<[number, number]> = []
    for (const field of slotFields) {
      if (field.startsWith('[')) continue // a slot being migrated or imported
      const [from, to = from] = field.split('-')
      slots.push([Number(from), Number(to)])
    }
    return {
      id,
      host: match[1],
      port: Number(match[2]),
      role: flagList.includes('master') ? 'master' : 'replica',
      masterId: master === '-' ? null : master,
      failed: flagList.includes('fail') || flagList.includes('fail?'),
      connected: link === 'connected',
      slots
    }
  })
}

function slotCount (node: ClusterNode): number {
  return node.slots.reduce((sum, [from, to]) => sum + to - from + 1, 0)
}

/** Sends one command on a fresh connection that fails fast instead of retrying. */
async function ask (port: number, timeoutMs: number, ...args: string[]): Promise<string> {
  const client = new Redis({
    host: HOST,
    port,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs
  })
  client.on('error', () => {})
  try {
    await client.connect()
    const [command = '', ...rest] = args
    return String(await client.call(command, ...rest))
  } finally {
    client.disconnect()
  }
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

export interface PrivateRedisClusterOptions {
  /** cluster-node-timeout: how long a silent master takes to be failed over. */
  nodeTimeoutMs?: number
}

export interface Failover {
  /** From the SIGKILL until another node saw a replica own all the dead master's slots. */
  failoverMs: number
  /** The promoted replica. */
  promotedPort: number
}

const START_ATTEMPTS = 3
const WAIT_MS = 20_000
const POLL_MS = 50

/**
 * A private Redis Cluster (three masters, three replicas) on free loopback
 * ports, for tests that crash or freeze nodes. Never the shared one: it is
 * started by scripts/redis-cluster.sh with its own ports and directory, and
 * every signal goes to a PID from its own pid files, checked to be the
 * redis-server of that port.
 */
export class PrivateRedisCluster {
  readonly firstPort: number
  readonly nodeTimeoutMs: number
  readonly #dir: string
  readonly #down = new Set<number>()
  readonly #paused = new Set<number>()
  #running = false
  /** The test process exits without its teardown: kill ours, remove what the script wrote. */
  readonly #killOnExit = (): void => {
    for (const port of this.ports) {
      const pid = this.#pid(port)
      if (pid !== null) process.kill(pid, 'SIGKILL')
    }
    rmSync(this.#dir, { recursive: true, force: true })
    for (const suffix of ['dir', 'lock']) {
      rmSync(join(tmpdir(), `fastify-ws-hub-redis-cluster-${this.firstPort}.${suffix}`), { force: true })
    }
  }

  private constructor (firstPort: number, nodeTimeoutMs: number) {
    this.firstPort = firstPort
    this.nodeTimeoutMs = nodeTimeoutMs
    this.#dir = mkdtempSync(join(tmpdir(), `ws-hub-redis-cluster-${firstPort}-`))
  }

  /** Starts one, stopped by t.teardown. */
  static async start (t: TapLike, options: PrivateRedisClusterOptions = {}): Promise<PrivateRedisCluster> {
    const nodeTimeoutMs = options.nodeTimeoutMs ?? 2_000
    let lastError: unknown
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      const cluster = new PrivateRedisCluster(randomFirstPort(), nodeTimeoutMs)
      t.teardown(() => cluster.stop())
      try {
        await cluster.#start()
        return cluster
      } catch (err) {
        lastError = err
        await cluster.stop()
        // Another test took one of the ports between the choice and the start: try others.
        if (!(err instanceof Error && err.message.includes('already in use'))) throw err
      }
    }
    throw lastError
  }

  get ports (): number[] {
    return Array.from({ length: NODE_COUNT }, (_, i) => this.firstPort + i)
  }

  /** Startup nodes for an ioredis Cluster. */
  get addresses (): ClusterAddress[] {
    return this.ports.map((port) => ({ host: HOST, port }))
  }

  get #env (): NodeJS.ProcessEnv {
    return {
      ...process.env,
      REDIS_CLUSTER_PORT: String(this.firstPort),
      REDIS_CLUSTER_DIR: this.#dir,
      REDIS_CLUSTER_NODE_TIMEOUT: String(this.nodeTimeoutMs)
    }
  }

  async #script (...args: string[]): Promise<void> {
    try {
      await run('bash', [SCRIPT, ...args], { env: this.#env, timeout: 60_000 })
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr ?? ''
      throw new Error(`scripts/redis-cluster.sh ${args.join(' ')} (ports ${this.firstPort}..${this.firstPort + NODE_COUNT - 1}) failed:\n${stderr}`, { cause: err })
    }
  }

  async #start (): Promise<void> {
    this.#running = true
    process.once('exit', this.#killOnExit)
    await this.#script('start')
  }

  /** Stops every node (paused ones too) by its own PID and removes its files. Idempotent. */
  async stop (): Promise<void> {
    if (!this.#running) return
    this.#running = false
    process.off('exit', this.#killOnExit)
    try {
      await this.#script('stop')
    } finally {
      this.#paused.clear()
      rmSync(this.#dir, { recursive: true, force: true })
    }
  }

  /** Our redis-server's PID on `port`, or null when it does not run. */
  #pid (port: number): number | null {
    let pid: number
    try {
      pid = Number(readFileSync(join(this.#dir, `redis-${port}.pid`), 'utf8').trim())
    } catch {
      return null
    }
    if (!Number.isInteger(pid) || pid <= 0) return null
    try {
      // The process title of a cluster node is "redis-server 127.0.0.1:<port> [cluster]".
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      return cmdline.startsWith('redis-server') && cmdline.includes(`:${port}`) ? pid : null
    } catch {
      return null
    }
  }

  #requirePid (port: number): number {
    if (!this.ports.includes(port)) throw new Error(`port ${port} is not a node of the private cluster on ${this.ports.join(',')}`)
    const pid = this.#pid(port)
    if (pid === null) throw new Error(`node ${HOST}:${port} of the private cluster is not running`)
    return pid
  }

  /** CLUSTER NODES as seen by a running, unpaused node other than `except`. */
  async nodes (except?: number): Promise<ClusterNode[]> {
    let lastError: unknown = new Error('no running node to ask')
    for (const port of this.ports) {
      if (port === except || this.#down.has(port) || this.#paused.has(port)) continue
      try {
        return parseClusterNodes(await ask(port, 1_000, 'CLUSTER', 'NODES'))
      } catch (err) {
        lastError = err
      }
    }
    throw lastError
  }

  /** Masters that serve slots and are not flagged as failed. */
  async masters (): Promise<ClusterNode[]> {
    return (await this.nodes()).filter((n) => n.role === 'master' && !n.failed && n.slots.length > 0).sort((a, b) => a.port - b.port)
  }

  /** Replicas not flagged as failed. */
  async replicas (): Promise<ClusterNode[]> {
    return (await this.nodes()).filter((n) => n.role === 'replica' && !n.failed).sort((a, b) => a.port - b.port)
  }

  /**
   * Crashes the master on `port` (SIGKILL) and resolves once another node
   * sees one of its replicas own all its slots and says cluster_state:ok.
   */
  async killMaster (port: number, timeoutMs = WAIT_MS): Promise<Failover> {
    const pid = this.#requirePid(port)
    const before = await this.nodes(port)
    const target = before.find((n) => n.port === port)
    if (target === undefined || target.role !== 'master' || target.slots.length === 0) {
      throw new Error(`node ${HOST}:${port} is not a master serving slots`)
    }
    const replicaIds = new Set(before.filter((n) => n.masterId === target.id && !n.failed).map((n) => n.id))
    if (replicaIds.size === 0) throw new Error(`master ${HOST}:${port} has no replica to take over`)
    const wanted = slotCount(target)

    const killedAt = performance.now()
    process.kill(pid, 'SIGKILL')
    this.#down.add(port)
    this.#paused.delete(port)
    return await this.#until(timeoutMs, `a replica of ${HOST}:${port} to take over its ${wanted} slots`, async () => {
      const view = await this.nodes(port)
      const promoted = view.find((n) => replicaIds.has(n.id) && n.role === 'master' && !n.failed && slotCount(n) === wanted)
      if (promoted === undefined) return null
      const failoverMs = Math.round(performance.now() - killedAt)
      if (!(await this.#clusterOk(promoted.port))) return null
      return { failoverMs, promotedPort: promoted.port }
    })
  }

  /**
   * Starts a killed node again with its cluster config; resolves once it is a
   * replica seen by the others and has synced with its master.
   */
  async restart (port: number, timeoutMs = WAIT_MS): Promise<void> {
    if (!this.ports.includes(port)) throw new Error(`port ${port} is not a node of the private cluster on ${this.ports.join(',')}`)
    if (this.#pid(port) !== null) throw new Error(`node ${HOST}:${port} is still running`)
    await this.#script('start-node', String(port))
    this.#down.delete(port)
    await this.#until(timeoutMs, `${HOST}:${port} to rejoin as a synced replica`, async () => {
      const me = (await this.nodes(port)).find((n) => n.port === port)
      if (me === undefined || me.failed || !me.connected || me.role !== 'replica') return null
      const replication = await ask(port, 1_000, 'INFO', 'replication')
      return replication.includes('master_link_status:up') ? true : null
    })
  }

  /**
   * Freezes a node (SIGSTOP): its connections stay open and nothing answers,
   * as a hung server or a black-holed network looks. stop() resumes it first.
   */
  pause (port: number): void {
    process.kill(this.#requirePid(port), 'SIGSTOP')
    this.#paused.add(port)
  }

  /** Resumes a frozen node (SIGCONT). */
  resume (port: number): void {
    if (!this.#paused.has(port)) return
    const pid = this.#pid(port)
    if (pid !== null) process.kill(pid, 'SIGCONT')
    this.#paused.delete(port)
  }

  async #clusterOk (port: number): Promise<boolean> {
    return (await ask(port, 1_000, 'CLUSTER', 'INFO')).includes('cluster_state:ok')
  }

  /** Polls `check` (errors count as "not yet") until it returns a value, within `timeoutMs`. */
  async #until<T> (timeoutMs: number, what: string, check: () => Promise<T | null>): Promise<T> {
    const deadline = performance.now() + timeoutMs
    let lastError: unknown = null
    while (performance.now() < deadline) {
      try {
        const value = await check()
        if (value !== null) return value
      } catch (err) {
        lastError = err
      }
      await sleep(POLL_MS)
    }
    const view = await this.nodes().then((nodes) => JSON.stringify(nodes), (err: Error) => err.message)
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; CLUSTER NODES: ${view}` +
      (lastError instanceof Error ? `; last error: ${lastError.message}` : ''))
  }
}

/**
 * A first port whose six node ports (and bus ports, +10000) lie below Linux's
 * ephemeral range (32768+), away from the shared cluster on 17000..17005; the
 * script refuses ports in use, and start() then tries another.
 */
function randomFirstPort (): number {
  return 18_000 + NODE_COUNT * Math.floor(Math.random() * 660)
}
