// A hub instance in its own process, for multi-instance tests: it runs the
// built package (dist/), as a deployment would. Options come as JSON in argv.
import Fastify from 'fastify'
import wsHub from '../../dist/index.js'

const { userHeader, ...options } = JSON.parse(process.argv[2] ?? '{}')
// Functions cannot travel as JSON: `userHeader` names a request header whose
// value becomes the user id, as the in-process tests' authenticate does.
if (typeof userHeader === 'string') {
  options.authenticate = (request) => {
    const user = request.headers[userHeader]
    // info for presence listings, as an app would return a display name.
    return typeof user === 'string' ? { userId: user, info: { name: user } } : null
  }
}
const app = Fastify({ logger: { level: process.env.HUB_LOG_LEVEL ?? 'warn' } })
await app.register(wsHub, { heartbeatIntervalMs: 0, handshakeRateLimit: false, rest: { auth: false }, ...options })
await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`READY ${app.server.address().port} ${app.wsHub.instanceId}\n`)
process.once('SIGTERM', () => {
  app.close().then(() => process.exit(0), () => process.exit(1))
})
