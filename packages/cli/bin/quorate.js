#!/usr/bin/env node
// The `quorate` command: the compiled CLI. `npm ci` builds it (the root package's "prepare"
// script runs tsc -b); without dist/ say how to build it instead of printing a module stack.
import { existsSync } from 'node:fs'

const main = new URL('../dist/main.js', import.meta.url)
if (!existsSync(main)) {
  process.stderr.write('quorate: the CLI is not built yet (no packages/cli/dist/main.js); run "npm run build" in the repository (npm ci builds it too)\n')
  process.exit(2)
}
await import(main.href)
