import websocket from '@fastify/websocket'
import type { FastifyInstance } from 'fastify'
import type { WebSocketServer } from 'ws'
import type { NormalizedOptions } from '../options/hub-options.js'
import { OptionsError } from '../errors.js'
import { wsErrorViolation, type Telemetry } from '../telemetry.js'

type ProtocolChooser = (offered: Set<string>) => string | false

/**
 * Registers @fastify/websocket, or adopts the app's own registration when
 * its options are compatible with the hub's (see `adopt`).
 */
export async function registerWebsocket (fastify: FastifyInstance, options: NormalizedOptions, closeSockets: () => Promise<void>, telemetry: Telemetry): Promise<void> {
  // Select our application protocol, never echo another entry: browsers can
  // only carry a token in Sec-WebSocket-Protocol, and it must not come back
  // in the response.
  const handleProtocols: ProtocolChooser = (offered) => options.protocols.find((p) => offered.has(p)) ?? false
  if (fastify.hasDecorator('websocketServer')) {
    adopt(fastify.websocketServer, options, handleProtocols)
    // Runs after the app's own preClose (registered first), which may
    // already have closed the sockets without a code.
    fastify.addHook('preClose', closeSockets)
    return
  }
  await fastify.register(websocket, {
    options: { maxPayload: options.maxPayload, perMessageDeflate: false, handleProtocols },
    errorHandler: (error, _socket, request) => {
      // ws has already closed the socket with the right code (1009, 1007, ...);
      // terminating here would drop that close frame.
      const violation = wsErrorViolation(error)
      if (violation !== null) {
        // Any client causes one per socket it opens, at will: counted, and
        // logged rate-limited without a stack, never a warning with a trace.
        telemetry.protocolViolation(violation, { ip: request.ip })
        return
      }
      // A write to a peer that already hung up (EPIPE, ECONNRESET): the
      // close that follows is logged; this says nothing more worth a warning.
      if (typeof (error as NodeJS.ErrnoException).syscall === 'string') {
        request.log.debug({ code: (error as NodeJS.ErrnoException).code }, 'ws-hub: socket error')
        return
      }
      request.log.warn({ err: error }, 'ws-hub: socket error')
    },
    preClose: closeSockets
  })
}

/**
 * An app that registered @fastify/websocket itself (for routes of its own)
 * keeps it, as long as:
 * - it set no `handleProtocols` of its own: the hub installs its chooser,
 *   which answers only with the hub's protocols, so a `bearer.` token entry
 *   is never echoed back (for the app's routes it then selects no protocol);
 * - its `maxPayload` is no larger than the hub's `maxPayload`: the limit is
 *   server-wide, and a larger one would let any client make the hub buffer
 *   that much per message.
 * permessage-deflate may be on; frames to compressing clients are then
 * written through `socket.send`.
 */
function adopt (server: WebSocketServer, options: NormalizedOptions, handleProtocols: ProtocolChooser): void {
  const wsOptions = server.options as { handleProtocols?: unknown, maxPayload?: number }
  if (wsOptions.handleProtocols !== undefined && wsOptions.handleProtocols !== null) {
    throw new OptionsError('fastify-ws-hub: @fastify/websocket was registered with its own handleProtocols; remove it so the hub can select its protocols (ws-hub.v1) and never echo a token')
  }
  const maxPayload = wsOptions.maxPayload ?? DEFAULT_WS_MAX_PAYLOAD
  if (maxPayload > options.maxPayload) {
    throw new OptionsError(`fastify-ws-hub: @fastify/websocket was registered with maxPayload ${maxPayload}, larger than the hub's maxPayload ${options.maxPayload}; pass options: { maxPayload: ${options.maxPayload} } when registering it`)
  }
  wsOptions.handleProtocols = handleProtocols
}

// ws' own default, 100 MiB.
const DEFAULT_WS_MAX_PAYLOAD = 100 * 1024 * 1024
