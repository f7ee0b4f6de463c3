import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', '.build/**', '.tap/**', '.cache/**', 'node_modules/**', 'test-artifacts/**']
  })
]
