/*
 * Event sources: consumers of other services' streams (Kafka, MQTT, Redis
 * Streams, a PostgreSQL outbox) whose records the hub publishes to its
 * clients. A backend reads and acknowledges; everything between (mapping,
 * validation, publishing, bad records, pausing) is the `SourceRunner`'s,
 * so each backend is only what is particular to its service.
 */

export type SourceState = 'up' | 'paused' | 'down'

/** Where one record goes, as `map` returns it. */
export type SourceTarget =
  | { topic: string, message: unknown, idempotencyKey?: string }
  | { userId: string, message: unknown }
  | { clientId: string, message: unknown }
  | { broadcast: true, message: unknown }

/** What `map` may return: one target, several, or null (or undefined) to skip the record. */
export type MapResult = SourceTarget | readonly SourceTarget[] | null | undefined

/** A `map` function; `R` is the backend's record type (a Kafka message, an MQTT packet, a stream entry, an outbox row). */
export type SourceMap<R> = (record: R) => MapResult

/** Why a record was not published. Metrics and stats use these names. */
export const BAD_RECORD_REASONS = ['invalid_json', 'map_failed', 'invalid_target', 'unknown_topic', 'invalid_message'] as const
export type BadRecordReason = typeof BAD_RECORD_REASONS[number]

/** One record as a consumer read it. */
export interface SourceRecord<R = unknown> {
  /** What `map` is given. */
  raw: R
  /**
   * Where the record is in its service (Kafka topic/partition/offset,
   * stream/id, table/id): logged with a bad record, never its payload.
   */
  coordinates: Readonly<Record<string, string | number>>
  /**
   * The idempotency key the coordinates give when they identify the record
   * for good; null when they do not (an MQTT packet id is reused).
   */
  key: string | null
  /** The payload as text, for the default `map`; null when there is none. */
  text: () => string | null
  /**
   * A default `map` of the backend's own for records that are not one JSON
   * document (an outbox row's columns, a stream entry's fields). Left out:
   * `text()` is parsed as `{ topic | userId | clientId | broadcast, message, idempotencyKey? }`.
   */
  defaultTargets?: () => MapResult
}

/** What a consumer hands its records to: the runner. */
export interface SourceSink {
  /**
   * Publishes records in order and resolves with how many of them, from
   * the first, the hub took: acknowledge exactly those. A bad record counts
   * as taken (skipped or dead-lettered). Fewer than all means the hub
   * cannot take publications now: stop reading, wait for `resumed()`, then
   * deliver the rest again, in the same order.
   */
  deliver: (records: readonly SourceRecord[]) => Promise<number>
  /**
   * Resolves once the hub takes publications again (at once when it does),
   * or when the source is closing (then `closing` is true).
   */
  resumed: () => Promise<void>
  /** True once `close` began: stop reading, acknowledge what was delivered. */
  readonly closing: boolean
  /** The connection to the service: `up` once reading, `down` while it is unreachable. */
  connected: (up: boolean, err?: unknown) => void
}

/** Context a backend gets from the hub. */
export interface SourceContext {
  /** This instance: a consumer name in a group, a lease holder. */
  instanceId: string
  /** The source's name, for logs and keys. */
  name: string
  log: import('fastify').FastifyBaseLogger
  /**
   * Leases on the hub's registry (Redis when the registry is, this process
   * otherwise), for an `ordered` source whose own service cannot hold one.
   */
  lease: import('./leases/lease.js').LeaseFactory
}

/**
 * One backend. `start` returns once reading began or failed the first time
 * (it goes on retrying by itself and reports through `sink.connected`);
 * `close` stops reading, lets an in-flight `deliver` finish, acknowledges
 * what was delivered and closes what the backend opened.
 */
export interface SourceConsumer {
  start: (sink: SourceSink) => Promise<void>
  /** Records waiting to be read (Kafka lag, stream entries undelivered and pending, outbox rows); null when the service cannot tell. */
  lag: () => Promise<number | null>
  /** Present when a dead-letter destination is configured: the record goes there instead of being skipped. */
  deadLetter?: (record: SourceRecord, reason: BadRecordReason) => Promise<void>
  /** Whether this instance reads now: false while another instance holds an `ordered` source's lease. */
  active?: () => boolean
  close: () => Promise<void>
}

/** A source's counters and state, as stats and health report them. */
export interface SourceStatus {
  name: string
  type: string
  state: SourceState
  /** false while another instance holds an `ordered` source's lease. */
  active: boolean
  recordsIn: number
  published: number
  /** Records `map` returned null (or an empty list) for. */
  filtered: number
  /** Bad records skipped, by reason (none of these when a dead-letter destination is set). */
  skipped: Record<BadRecordReason, number>
  deadLettered: number
  /** The last lag read (every few seconds); null when unknown. */
  lag: number | null
}
