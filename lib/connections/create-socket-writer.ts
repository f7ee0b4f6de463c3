import type { SocketWriter } from './socket-writer.js'
import { SendWriter } from './send-writer.js'
import { PreparedFrameWriter } from './prepared-frame.js'

export interface SocketWriterOptions {
  /**
   * true: build each frame once for all its recipients, through ws internals
   * checked at startup (lib/connections/prepared-frame.ts). false: `socket.send`.
   */
  preparedFrames: boolean
  /** Coalesce each socket's writes of a tick into one syscall. Default true. */
  coalesce?: boolean
}

export function createSocketWriter (options: SocketWriterOptions): SocketWriter {
  const coalesce = options.coalesce ?? true
  return options.preparedFrames ? new PreparedFrameWriter({ coalesce }) : new SendWriter({ coalesce })
}
