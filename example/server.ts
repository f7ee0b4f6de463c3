/**
 * Runs the example: `npm start`, then open http://localhost:3000 (chat) and
 * http://localhost:3000/docs (REST API). See config.ts for the environment
 * variables it reads.
 */
import { buildExampleApp } from './app.js'
import { readConfig } from './config.js'

// Closing waits for clients (bounded by the hub's closeTimeoutMs) and for the
// brokers; past this, something is stuck and exiting beats hanging until
// `docker stop` sends SIGKILL.
const CLOSE_GRACE_MS = 10_000

const config = readConfig(process.env)
const app = await buildExampleApp(process.env)

// `once`: a second Ctrl+C falls back to Node's default and ends the process.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    app.log.info({ signal }, 'closing')
    setTimeout(() => {
      app.log.error(`not closed after ${CLOSE_GRACE_MS} ms; exiting`)
      process.exit(1)
    }, CLOSE_GRACE_MS).unref()
    app.close().then(
      () => { app.log.info('closed') },
      (err: unknown) => {
        // A resource that failed to close may keep the event loop alive forever.
        app.log.error({ err }, 'close failed; exiting')
        process.exit(1)
      }
    )
  })
}

try {
  await app.listen({ port: config.port, host: config.host })
} catch (err) {
  app.log.error({ err }, 'could not listen')
  process.exitCode = 1
  await app.close()
}
