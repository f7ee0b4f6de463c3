/**
 * `fastify-ws-hub/testing`: the conformance suites every backend passes.
 * A `type: 'custom'` backend runs them in a few lines, e.g.
 * `transportSuite(t, 'my transport', { create: () => new MyTransport() })`.
 */
export type { TapLike } from './tap-like.js'
export { transportSuite } from './transport-suite.js'
export { limiterSuite } from './limiter-suite.js'
export { directorySuite } from './directory-suite.js'
export { presenceSuite } from './presence-suite.js'
export { historySuite, type HistoryFactory } from './history-suite.js'
export { sourceSuite, FakePublisher, quietLogger, type SourceFixture } from './source-suite.js'
