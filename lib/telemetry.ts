import diagnosticsChannel from 'node:diagnostics_channel'
import type { Connection } from './connections/connection.js'
import { isBuiltInType } from './protocol/frames.js'

/**
 * diagnostics_channel names. APM and OpenTelemetry instrumentations can
 * subscribe without the hub depending on them; with no subscriber a
 * publish costs one boolean check.
 */
export const CHANNELS = {
  connect: 'fastify-ws-hub:connect',
  disconnect: 'fastify-ws-hub:disconnect',
  message: 'fastify-ws-hub:message'
} as const

export interface ConnectEvent { clientId: string, ip: string, userId: string | null, instanceId: string }
export interface DisconnectEvent extends ConnectEvent { code: number, reason: string, durationMs: number }
export interface MessageEvent { clientId: string, userId: string | null, type: string, bytes: number }

const connectChannel = diagnosticsChannel.channel(CHANNELS.connect)
const disconnectChannel = diagnosticsChannel.channel(CHANNELS.disconnect)
const messageChannel = diagnosticsChannel.channel(CHANNELS.message)

// Label values are bounded: a client chooses its close code and its message
// type, and an unbounded label would let it grow the metrics without limit.
const KNOWN_CLOSE_CODES = new Set([1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 4000, 4008])

export function closeCodeLabel (code: number): string {
  return KNOWN_CLOSE_CODES.has(code) ? String(code) : 'other'
}

/** A client frame's type as a metric label: built-in types by name, everything else folded. */
export function messageTypeLabel (type: string | undefined): string {
  if (type === undefined) return 'invalid'
  return isBuiltInType(type) ? type : 'custom'
}

/** Counts by bounded label, and the diagnostics_channel events. */
export class Telemetry {
  readonly opened = { total: 0 }
  readonly closedByCode = new Map<string, number>()
  readonly messagesInByType = new Map<string, number>()
  readonly #instanceId: string
  #publishObserver: ((seconds: number) => void) | null = null

  constructor (instanceId: string) {
    this.#instanceId = instanceId
  }

  connectionOpened (connection: Connection): void {
    this.opened.total++
    if (connectChannel.hasSubscribers) {
      connectChannel.publish({ clientId: connection.id, ip: connection.ip, userId: connection.userId, instanceId: this.#instanceId } satisfies ConnectEvent)
    }
  }

  connectionClosed (connection: Connection, code: number, reason: string): void {
    increment(this.closedByCode, closeCodeLabel(code))
    if (disconnectChannel.hasSubscribers) {
      disconnectChannel.publish({
        clientId: connection.id,
        ip: connection.ip,
        userId: connection.userId,
        instanceId: this.#instanceId,
        code,
        reason,
        durationMs: Date.now() - connection.connectedAt
      } satisfies DisconnectEvent)
    }
  }

  /** `type` is undefined for frames that never parsed into a typed message. */
  messageIn (connection: Connection, type: string | undefined, bytes: number): void {
    increment(this.messagesInByType, messageTypeLabel(type))
    if (messageChannel.hasSubscribers) {
      messageChannel.publish({ clientId: connection.id, userId: connection.userId, type: type ?? 'invalid', bytes } satisfies MessageEvent)
    }
  }

  /** Set by the metrics module when a histogram wants broker publish timings. */
  observePublishes (observer: (seconds: number) => void): void {
    this.#publishObserver = observer
  }

  brokerPublished (seconds: number): void {
    this.#publishObserver?.(seconds)
  }
}

function increment (map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1)
}
