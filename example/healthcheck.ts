/**
 * The Docker HEALTHCHECK: exits 0 when the server's readiness route answers
 * `{"status":"ok"}`, 1 otherwise. Node instead of curl, because node:20-slim
 * ships no curl or wget.
 */
const HEALTH_PATH = '/api/health'
const TIMEOUT_MS = 2000

// The probe runs inside the container, next to the server.
const url = `http://127.0.0.1:${process.env.PORT ?? '3000'}${HEALTH_PATH}`

try {
  const response = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) })
  const body: unknown = await response.json().catch(() => null)
  // The route answers 200 with "degraded" while the broker is unreachable:
  // the instance still serves its own clients, but is not healthy.
  const status = body !== null && typeof body === 'object' && 'status' in body ? body.status : undefined
  if (response.ok && status === 'ok') {
    process.exitCode = 0
  } else {
    console.error(`${url} answered ${response.status} ${JSON.stringify(body)}`)
    process.exitCode = 1
  }
} catch (err) {
  console.error(`${url} did not answer: ${String(err)}`)
  process.exitCode = 1
}
