import type pg from 'pg'

/*
 * pg emits a dead connection's error on the client itself, and the pool
 * listens only while a client is idle in it: a client checked out without
 * an 'error' listener ends the process when its connection dies. Every
 * client this source checks out goes through one of these.
 */

/** A client held out of the pool for a session (LISTEN, an advisory lock). */
export interface HeldClient {
  client: pg.PoolClient
  /** False once its connection failed or ended: what the session held (a LISTEN, a lock) is gone. */
  readonly alive: boolean
  /** Back to the pool; `destroy` closes its connection instead (a failed or unknown session). */
  release: (destroy?: boolean) => void
}

/** Checks a client out for a session; `onLost` is called once if its connection fails or ends while held. */
export async function hold (pool: pg.Pool, onLost: (err: Error) => void): Promise<HeldClient> {
  const client = await pool.connect()
  let alive = true
  let released = false
  const lose = (err: Error): void => {
    if (!alive || released) return
    alive = false
    onLost(err)
  }
  const onError = (err: Error): void => { lose(err) }
  const onEnd = (): void => { lose(new Error('the connection to PostgreSQL ended')) }
  client.on('error', onError)
  client.on('end', onEnd)
  return {
    client,
    get alive () { return alive },
    release (destroy = false) {
      if (released) return
      released = true
      client.off('error', onError)
      client.off('end', onEnd)
      client.release(destroy || !alive)
    }
  }
}

/** Runs `work` in a transaction on `client`: committed when it resolves, rolled back when it throws. */
export async function inTransaction<T> (client: pg.ClientBase, work: () => Promise<T>): Promise<T> {
  await client.query('BEGIN')
  try {
    const result = await work()
    await client.query('COMMIT')
    return result
  } catch (err) {
    // The rollback's own failure (a dead connection) says less than `err`;
    // the caller does not reuse a client whose transaction failed.
    await client.query('ROLLBACK').catch(() => {})
    throw err
  }
}

/** Runs `work` on a pooled client; a client whose work failed is closed rather than handed out again. */
export async function withClient<T> (pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const held = await hold(pool, () => {})
  try {
    const result = await work(held.client)
    held.release()
    return result
  } catch (err) {
    held.release(true)
    throw err
  }
}
