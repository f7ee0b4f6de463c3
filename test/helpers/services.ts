import { connect } from 'node:net'

/**
 * Where the external services the tests use live. `.ci/run` exports these
 * (pointing at the machine's own instance, or a private one it started); the
 * defaults are the usual local ports.
 */
export function mqttUrl (): string {
  return envOr('MQTT_URL', 'mqtt://127.0.0.1:1883')
}

export function databaseUrl (): string {
  return envOr('DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/test')
}

export function redisUrl (): string {
  return envOr('REDIS_URL', 'redis://127.0.0.1:6379')
}

function envOr (name: string, fallback: string): string {
  const value = process.env[name]
  return value === undefined || value === '' ? fallback : value
}

const defaultPorts: Record<string, number> = {
  'mqtt:': 1883,
  'mqtts:': 8883,
  'ws:': 80,
  'wss:': 443,
  'postgres:': 5432,
  'postgresql:': 5432,
  'redis:': 6379,
  'rediss:': 6379
}

/**
 * Whether something accepts a TCP connection at the URL's host and port
 * within `timeoutMs`. Only a reachability check, for skip decisions:
 *   t.test('...', { skip: await answers(u) ? false : `nothing at ${u}` }, ...)
 * Never rejects: a malformed URL or unknown scheme without a port is `false`.
 */
export async function answers (url: string, timeoutMs = 1000): Promise<boolean> {
  let host: string
  let port: number
  try {
    const parsed = new URL(url)
    host = parsed.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1'
    port = parsed.port === '' ? (defaultPorts[parsed.protocol] ?? NaN) : Number(parsed.port)
  } catch {
    return false
  }
  if (!Number.isInteger(port) || port <= 0) return false
  return await new Promise<boolean>((resolve) => {
    const socket = connect({ host, port })
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}
