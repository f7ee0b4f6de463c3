// A separate hub process for the cross-process reservation test. It runs the
// compiled cluster state (`npm run build` first), joins as its instance,
// reports "ready", waits for "go" on stdin so every process starts together,
// fires its reservations concurrently and prints how many succeeded as JSON.
import { createInterface } from 'node:readline'
import { RedisClusterState } from '../../dist/cluster/redis/redis-cluster-state.js'

const { REDIS_URL, PREFIX, INSTANCE, ATTEMPTS, PER_IP, TOTAL, PER_USER } = process.env
const ips = ['10.9.0.1', '10.9.0.2']

const noop = () => {}
const log = { level: 'silent', fatal: noop, error: noop, warn: noop, info: noop, debug: noop, trace: noop, silent: noop }
log.child = () => log

const state = new RedisClusterState({ type: 'redis', url: REDIS_URL, keyPrefix: PREFIX }, log)
await state.directory.join(INSTANCE)
process.stdout.write('ready\n')

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (line !== 'go') continue
  const limits = { perIp: Number(PER_IP), total: Number(TOTAL) }
  const attempts = Array.from({ length: Number(ATTEMPTS) }, (_, n) => n)
  const [results, users] = await Promise.all([
    Promise.all(attempts.map((n) => state.limiter.reserve(ips[n % ips.length], limits))),
    Promise.all(attempts.map(() => state.limiter.reserveUser('shared-user', Number(PER_USER))))
  ])
  const ok = results.filter((r) => r.ok).length
  const userOk = users.filter((taken) => taken).length
  process.stdout.write(JSON.stringify({ ok, refused: results.length - ok, userOk }) + '\n')
  break
}
lines.close()
// An open stdin would keep this process alive.
process.stdin.destroy()
// Close without leave: the parent reads the counts, then removes the instances.
await state.close()
