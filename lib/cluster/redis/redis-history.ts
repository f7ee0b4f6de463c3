import { createHash, randomBytes, randomInt } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { AppendRequest, AppendResult, History, HistoryRetention, ReadResult, StreamPosition } from '../history.js'
import { newBase } from '../history-epoch.js'
import { ClusterStateError } from '../../errors.js'
import { BACKEND_DEFAULTS } from '../../options/backend-options.js'
import { checkSource, closeConnection, connectConnection, describeSource, openConnection, type RedisConnection, type RedisSource } from './connect.js'
import { HISTORY_APPEND, HISTORY_POSITION, HISTORY_READ, HISTORY_SCRIPTS, type HistoryScript } from './history-lua.js'
import { checkClusterPrefix, historyIdempotencyKey, historyKeys } from './keys.js'

export interface RedisHistoryOptions extends RedisSource {
  keyPrefix?: string | undefined
}

/**
 * History in Redis: a Stream per topic, its entries' ids the offsets, with
 * the offset counter and epoch in a hash beside it (layout in `keys.ts`).
 * Each operation is one Lua script (`history-lua.ts`), so concurrent
 * appends from any number of instances get consecutive offsets, and the
 * frame is stored with its offset in the same step.
 *
 * A Redis restarted without persistence has lost the base epoch with
 * everything else: the next script makes a new one, offsets restart at 1
 * under new epochs, and every position of before reads `ok: false`.
 *
 * On a Redis Cluster each topic's keys are in the topic's slot, so topics
 * spread over the shards; the base epoch is kept per slot (see `keys.ts`).
 *
 * One connection of its own, opened at first use (from `url`, as a
 * duplicate of the user's `client`, which is never closed, or a Cluster
 * client on `cluster`). While Redis is
 * unreachable every call rejects at once; nothing is queued or resent, so
 * an append whose reply was lost may have been stored: a retry with the
 * same idempotency key answers as the first.
 */
export class RedisHistory implements History {
  readonly #source: RedisSource
  readonly #prefix: string
  /** On a Redis Cluster the base epoch is kept per slot (see `historyKeys`). */
  readonly #cluster: boolean
  /** '' on a single Redis; on a cluster, the name empty positions carry (see `empty_epoch` in history-lua.ts). */
  readonly #store: string
  readonly #log: FastifyBaseLogger
  #client: RedisConnection | null = null
  #connecting: Promise<void> | null = null
  #lastError: unknown = undefined
  #closing: Promise<void> | null = null

  constructor (options: RedisHistoryOptions, log: FastifyBaseLogger) {
    this.#source = checkSource(options, 'history')
    this.#prefix = options.keyPrefix ?? BACKEND_DEFAULTS.redisHistory.keyPrefix
    this.#cluster = this.#source.cluster !== undefined
    if (this.#cluster) checkClusterPrefix(this.#prefix, 'history')
    this.#store = this.#cluster ? `cluster-${createHash('sha256').update(this.#prefix).digest('hex').slice(0, 16)}` : ''
    this.#log = log
  }

  async append (request: AppendRequest): Promise<AppendResult> {
    const { topic, retention, idempotencyKey } = request
    const keys = historyKeys(this.#prefix, topic, this.#cluster)
    const template = frameTemplate(request.frame)
    const seenKey = idempotencyKey === undefined ? keys.head : historyIdempotencyKey(this.#prefix, topic, idempotencyKey)
    const reply = await this.#run('append', topic, HISTORY_APPEND, [keys.epoch, keys.head, keys.log, seenKey], [
      retention.size, retention.ttlMs, request.idempotencyWindowMs, idempotencyKey === undefined ? '0' : '1', newBase(), this.#store,
      template.slots, ...template.pieces
    ])
    if (Array.isArray(reply) && reply[0] === 1 && typeof reply[1] === 'string') return parseSeen(reply[1], topic)
    if (!Array.isArray(reply) || reply[0] !== 0 || typeof reply[1] !== 'number' || typeof reply[2] !== 'string') {
      throw unexpected('append', topic, reply)
    }
    const position = { offset: reply[1], epoch: reply[2] }
    // The same bytes the script stored: it filled the same pieces the same way.
    return { ...position, frame: fill(template, position), duplicate: false }
  }

  async read (topic: string, since: StreamPosition, limit: number, retention: HistoryRetention): Promise<ReadResult> {
    const keys = historyKeys(this.#prefix, topic, this.#cluster)
    // A position no script could have made reads nothing; never sent to Redis as is.
    const offset = Number.isSafeInteger(since.offset) && since.offset >= 0 ? since.offset : -1
    const reply = await this.#run('read', topic, HISTORY_READ, [keys.epoch, keys.head, keys.log], [
      offset, since.epoch, Math.max(0, Math.floor(limit)), retention.size, retention.ttlMs, newBase(), this.#store
    ])
    if (!Array.isArray(reply) || typeof reply[1] !== 'number' || typeof reply[2] !== 'string') throw unexpected('read', topic, reply)
    const position = { offset: reply[1], epoch: reply[2] }
    if (reply[0] !== 1) return { ok: false, position }
    const frames: unknown[] = reply.slice(3)
    const publications = frames.map((frame, i) => {
      if (typeof frame !== 'string') throw unexpected('read', topic, reply)
      return { offset: offset + i + 1, frame }
    })
    return { ok: true, publications, position }
  }

  async position (topic: string): Promise<StreamPosition> {
    const keys = historyKeys(this.#prefix, topic, this.#cluster)
    const reply = await this.#run('position', topic, HISTORY_POSITION, [keys.epoch, keys.head], [newBase(), this.#store])
    if (!Array.isArray(reply) || typeof reply[0] !== 'number' || typeof reply[1] !== 'string') throw unexpected('position', topic, reply)
    return { offset: reply[0], epoch: reply[1] }
  }

  /** Idempotent; closes only the connection it opened. */
  async close (): Promise<void> {
    this.#closing ??= (async () => {
      const client = this.#client
      this.#client = null
      if (client !== null) await closeConnection(client)
    })()
    await this.#closing
  }

  async #run (op: string, topic: string, script: HistoryScript, keys: string[], args: Array<string | number>): Promise<unknown> {
    const client = await this.#connection()
    if (client.status !== 'ready') {
      throw new ClusterStateError(`RedisHistory.${op}: Redis is unreachable (${client.status}) on ${describeSource(this.#source)} (topic ${topic})`, { cause: this.#lastError })
    }
    // Commands made by defineCommand exist only at run time, so ioredis' types do not list them.
    const command: unknown = Reflect.get(client, script.name)
    if (typeof command !== 'function') throw new ClusterStateError(`RedisHistory: script ${script.name} is not defined`)
    try {
      const reply: unknown = await command.apply(client, [...keys, ...args])
      return reply
    } catch (err) {
      throw new ClusterStateError(`RedisHistory.${op} failed on ${describeSource(this.#source)} (topic ${topic})`, { cause: err })
    }
  }

  /** The connection, connected at first use; later reconnects are ioredis's. */
  async #connection (): Promise<RedisConnection> {
    if (this.#closing !== null) throw new ClusterStateError('RedisHistory: used after close()')
    let client = this.#client
    // Given up on (a first connect that failed for good): start over.
    if (client !== null && client.status === 'end') client = null
    if (client === null) {
      client = openConnection(this.#source, 'ws-hub:history')
      for (const { name, keys, lua } of HISTORY_SCRIPTS) client.defineCommand(name, { numberOfKeys: keys, lua })
      // Without an 'error' listener ioredis prints every failed reconnect;
      // the error becomes the cause of the next call's rejection.
      client.on('error', (err: unknown) => { this.#lastError = err })
      const opened = client
      client.on('ready', () => { if (this.#lastError !== undefined) this.#log.info('ws-hub: the Redis history store answers again') })
      this.#client = opened
    }
    if (client.status === 'wait') {
      const started = client
      this.#connecting ??= connectConnection(started).then(() => undefined, (err: unknown) => { this.#lastError = err })
        .finally(() => { this.#connecting = null })
    }
    if (this.#connecting !== null) await this.#connecting
    return client
  }
}

/**
 * The frame with its offset and epoch left out: the builder is called once
 * with a random offset and epoch, and the text split where they appear. The
 * script fills the real ones in (Lua cannot call the builder). Random marks
 * of 15 digits and 24 hex characters: a payload holding one by chance is
 * about as likely as a collision of random ids.
 */
interface FrameTemplate {
  /** 'o' or 'e' per place, in order. */
  slots: string
  pieces: string[]
}

function frameTemplate (build: (position: StreamPosition) => string): FrameTemplate {
  const offset = 100_000_000_000_000 + randomInt(2 ** 47)
  const epoch = randomBytes(12).toString('hex')
  const text = build({ offset, epoch })
  const marks = [String(offset), epoch]
  let slots = ''
  const pieces: string[] = []
  let at = 0
  for (;;) {
    const o = text.indexOf(marks[0] ?? '', at)
    const e = text.indexOf(marks[1] ?? '', at)
    if (o === -1 && e === -1) break
    const isOffset = e === -1 || (o !== -1 && o < e)
    const found = isOffset ? o : e
    pieces.push(text.slice(at, found))
    slots += isOffset ? 'o' : 'e'
    at = found + (isOffset ? marks[0] ?? '' : marks[1] ?? '').length
  }
  pieces.push(text.slice(at))
  return { slots, pieces }
}

function fill (template: FrameTemplate, position: StreamPosition): string {
  let text = template.pieces[0] ?? ''
  for (let i = 0; i < template.slots.length; i++) {
    text += (template.slots[i] === 'o' ? String(position.offset) : position.epoch) + (template.pieces[i + 1] ?? '')
  }
  return text
}

/** "<offset> <epoch> <frame>", as the append script stores a seen key. */
function parseSeen (stored: string, topic: string): AppendResult {
  const first = stored.indexOf(' ')
  const second = stored.indexOf(' ', first + 1)
  const offset = Number(stored.slice(0, first))
  if (first <= 0 || second <= first || !Number.isSafeInteger(offset)) throw unexpected('append', topic, stored.slice(0, 100))
  return { offset, epoch: stored.slice(first + 1, second), frame: stored.slice(second + 1), duplicate: true }
}

function unexpected (op: string, topic: string, reply: unknown): ClusterStateError {
  return new ClusterStateError(`RedisHistory.${op}: unexpected reply from Redis for topic ${topic}: ${JSON.stringify(reply)?.slice(0, 200) ?? typeof reply}`)
}
