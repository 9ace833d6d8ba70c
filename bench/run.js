// Runs every benchmark script in bench/ (each *.js except this one) in turn, each in its own
// Node process, and prints what they print. `npm run bench` builds first (tsc -b).
// Pass names to run only some: `node bench/run.js sync-catchup`.
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const only = process.argv.slice(2)
const scripts = readdirSync(here)
  .filter(f => f.endsWith('.js') && f !== 'run.js')
  .filter(f => only.length === 0 || only.some(o => f.startsWith(o)))
  .sort()
let failed = 0
for (const script of scripts) {
  console.log(`\n=== ${script} ===`)
  const t0 = Date.now()
  const r = spawnSync(process.execPath, ['--expose-gc', join(here, script)], { stdio: 'inherit' })
  if (r.status !== 0) failed++
  console.log(`=== ${script}: ${r.status === 0 ? 'done' : `FAILED (exit ${r.status ?? r.signal})`} in ${((Date.now() - t0) / 1000).toFixed(1)} s ===`)
}
process.exitCode = failed > 0 ? 1 : 0
