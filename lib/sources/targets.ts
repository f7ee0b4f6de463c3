import { createHash } from 'node:crypto'
import { MAX_ID_LENGTH } from '../protocol/frames.js'
import type { BadRecordReason, MapResult, SourceMap, SourceRecord, SourceTarget } from './source.js'

/** A record that cannot be published, with the reason it is counted under. */
export class BadRecord extends Error {
  readonly reason: BadRecordReason

  constructor (reason: BadRecordReason, message: string, options?: ErrorOptions) {
    super(message, options)
    this.reason = reason
  }
}

/**
 * The targets of one record: the user's `map`, or the backend's default,
 * or the record's text parsed as one target (or an array of them). An
 * empty list means the record is skipped on purpose (`map` returned null).
 */
export function targetsOf (record: SourceRecord, map: SourceMap<unknown> | undefined): SourceTarget[] {
  let result: MapResult
  if (map !== undefined) {
    try {
      result = map(record.raw)
    } catch (err) {
      // A map that parses the payload itself is the common case: its
      // SyntaxError is the payload's fault, not the map's.
      if (err instanceof SyntaxError) throw new BadRecord('invalid_json', 'the payload is not valid JSON', { cause: err })
      throw new BadRecord('map_failed', 'map threw', { cause: err })
    }
  } else if (record.defaultTargets !== undefined) {
    result = record.defaultTargets()
  } else {
    result = parseDefault(record.text())
  }
  return shapeOf(result)
}

/** The default shape: a JSON document that is a target or an array of targets. */
export function parseDefault (text: string | null): MapResult {
  if (text === null) throw new BadRecord('invalid_target', 'the record has no payload')
  try {
    return JSON.parse(text) as MapResult
  } catch (err) {
    throw new BadRecord('invalid_json', 'the payload is not valid JSON', { cause: err })
  }
}

function shapeOf (result: unknown): SourceTarget[] {
  if (result === null || result === undefined) return []
  const list: unknown[] = Array.isArray(result) ? result : [result]
  for (const target of list) {
    const problem = targetProblem(target)
    if (problem !== null) throw new BadRecord('invalid_target', problem)
  }
  return list as SourceTarget[]
}

const ADDRESSES = ['topic', 'userId', 'clientId', 'broadcast'] as const

function targetProblem (target: unknown): string | null {
  if (typeof target !== 'object' || target === null || Array.isArray(target)) return 'a target must be an object'
  if (!('message' in target)) return 'a target needs a message'
  const named = ADDRESSES.filter((key) => key in target)
  if (named.length !== 1) return 'a target names exactly one of topic, userId, clientId, broadcast'
  const [address] = named
  const value = (target as Record<string, unknown>)[address as string]
  if (address === 'broadcast') return value === true ? null : 'broadcast must be true'
  if (typeof value !== 'string') return `${String(address)} must be a string`
  const key = (target as Record<string, unknown>).idempotencyKey
  if (key !== undefined && (address !== 'topic' || typeof key !== 'string')) return 'idempotencyKey is a string, on a topic target only'
  return null
}

/**
 * The key a topic publication is de-duplicated by: the one `map` gave, or
 * the record's own (with the target's index when it has several, so the
 * targets of one record never shadow each other).
 */
export function keyOf (record: SourceRecord, target: SourceTarget, index: number, count: number): string | undefined {
  if (!('topic' in target)) return undefined
  if (target.idempotencyKey !== undefined) return target.idempotencyKey
  if (record.key === null) return undefined
  const key = count === 1 ? record.key : `${record.key}#${index}`
  // Coordinates can outgrow a key (a Kafka topic name alone may be 249
  // characters): a digest keeps them apart in a key's length.
  return key.length <= MAX_ID_LENGTH ? key : `sha256:${createHash('sha256').update(key).digest('base64url')}`
}
