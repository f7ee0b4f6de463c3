import t from 'tap'
import {
  ClusterStateError, EnvelopeError, HubClosedError, HubError, HubErrorCodes, HubProtocolError, InvalidArgumentError, InvalidMessageError, PresenceOffError, HistoryOffError,
  MissingPackageError, OptionsError, QueryTimeoutError, TransportError, SourceError, LeaseError
} from '../lib/index.js'

t.test('every error kind carries its stable code, its name and its cause', async (t) => {
  const kinds = [
    [OptionsError, HubErrorCodes.invalidOption],
    [MissingPackageError, HubErrorCodes.missingPackage],
    [TransportError, HubErrorCodes.transport],
    [ClusterStateError, HubErrorCodes.clusterState],
    [EnvelopeError, HubErrorCodes.envelope],
    [QueryTimeoutError, HubErrorCodes.queryTimeout],
    [HubClosedError, HubErrorCodes.closed],
    [InvalidArgumentError, HubErrorCodes.invalidArgument],
    [InvalidMessageError, HubErrorCodes.invalidMessage],
    [PresenceOffError, HubErrorCodes.presenceOff],
    [HistoryOffError, HubErrorCodes.historyOff],
    [SourceError, HubErrorCodes.source],
    [LeaseError, HubErrorCodes.lease]
  ] as const
  const codes = new Set<string>()
  for (const [Kind, code] of kinds) {
    const cause = new Error('underneath')
    const err = new Kind('what happened', { cause })
    t.ok(err instanceof HubError, `${Kind.name} is a HubError`)
    t.equal(err.code, code)
    t.equal(err.name, Kind.name)
    t.equal(err.cause, cause)
    t.equal(err.message, 'what happened')
    codes.add(code)
    for (const [Other] of kinds) if (Other !== Kind) t.notOk(err instanceof Other, `${Kind.name} is not a ${Other.name}`)
  }
  t.equal(codes.size, kinds.length, 'codes are distinct')
  t.same(new Set(Object.values(HubErrorCodes)), codes, 'every code has its class')
})

t.test('HubProtocolError keeps the wire code it is given', async (t) => {
  const err = new HubProtocolError('invalid_sides', 'sides must be >= 2')
  t.ok(err instanceof HubError)
  t.equal(err.code, 'invalid_sides')
  t.equal(err.name, 'HubProtocolError')
})
