// Run by the Dockerfile's build stage: moves the named devDependencies of
// ./package.json to dependencies, so `npm prune --omit=dev` keeps them. The
// example needs them at run time; the library itself does not. The versions
// stay those already installed from the lockfile.
import { readFileSync, writeFileSync } from 'node:fs'

const names = process.argv.slice(2)
if (names.length === 0) throw new Error('usage: node promote-dependencies.mjs <package>...')
const pkg = JSON.parse(readFileSync('package.json', 'utf8'))
for (const name of names) {
  const range = pkg.devDependencies?.[name]
  if (range === undefined) throw new Error(`${name} is not a devDependency in package.json`)
  pkg.dependencies = { ...pkg.dependencies, [name]: range }
  delete pkg.devDependencies[name]
}
writeFileSync('package.json', JSON.stringify(pkg, null, 2) + '\n')
