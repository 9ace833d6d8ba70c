// Runs every benchmark script in bench/ (each *.js except this one) in turn, each in its own Node
// process, then writes what they measured to bench/results/latest.json and the table in the
// README's "Performance" section. `npm run bench` builds first (tsc -b).
//   node bench/run.js [--quick] [NAME …]     # names: only the scripts whose file names start with one
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, cpus, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const quick = args.includes('--quick')
const only = args.filter(a => !a.startsWith('--'))
const scripts = readdirSync(here)
  .filter(f => f.endsWith('.js') && f !== 'run.js')
  .filter(f => only.length === 0 || only.some(o => f.startsWith(o)))
  .sort()
const resultsDir = join(here, 'results')
mkdirSync(resultsDir, { recursive: true })
const rowsFile = join(resultsDir, `.rows-${process.pid}.jsonl`)
rmSync(rowsFile, { force: true })

const started = new Date()
const loadBefore = loadavg()
const uptime = () => spawnSync('uptime', { encoding: 'utf8' }).stdout.trim()
console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model}), ${Math.round(totalmem() / 2 ** 30)} GiB; ${uptime()}`)
let failed = 0
for (const script of scripts) {
  console.log(`\n=== ${script} ===  (${uptime()})`)
  const t0 = Date.now()
  const r = spawnSync(process.execPath, ['--expose-gc', join(here, script), ...(quick ? ['--quick'] : [])], {
    stdio: 'inherit',
    env: { ...process.env, BENCH_RESULTS: rowsFile }
  })
  if (r.status !== 0) failed++
  console.log(`=== ${script}: ${r.status === 0 ? 'done' : `FAILED (exit ${r.status ?? r.signal})`} in ${((Date.now() - t0) / 1000).toFixed(1)} s ===`)
}
const rows = existsSync(rowsFile) ? readFileSync(rowsFile, 'utf8').trim().split('\n').filter(Boolean).map(l => JSON.parse(l)) : []
rmSync(rowsFile, { force: true })

const run = {
  startedAt: started.toISOString(),
  finishedAt: new Date().toISOString(),
  quick,
  node: process.version,
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model,
  loadBefore: loadBefore.map(x => Number(x.toFixed(2))),
  loadAfter: loadavg().map(x => Number(x.toFixed(2))),
  scripts,
  failed,
  rows
}
const ratio = (r) => r.ratio === null || r.ratio === undefined || !Number.isFinite(r.ratio) ? 'n/a' : r.ratio.toFixed(2)
const table = [
  '| benchmark | measured | compared with (same run) | ratio | target | met | load (1/5/15 min) |',
  '|---|---|---|---|---|---|---|',
  ...rows.map(r => `| ${r.benchmark} | ${r.figure} | ${r.limit} | ${ratio(r)} | ${r.target} | ${r.meets === undefined ? '–' : r.meets ? 'yes' : '**no**'} | ${r.load} |`)
].join('\n')
console.log(`\n${table}\n`)

// A quick run (or a partial one) never overwrites the figures of a full run in the README.
const partial = only.length > 0
const out = join(resultsDir, quick ? 'latest-quick.json' : partial ? 'latest-partial.json' : 'latest.json')
writeFileSync(out, JSON.stringify(run, null, 2) + '\n')
console.log(`results: ${out}`)
if (!quick && !partial) {
  const readmeFile = join(here, '..', 'README.md')
  const readme = readFileSync(readmeFile, 'utf8')
  const begin = '<!-- bench:begin -->'
  const end = '<!-- bench:end -->'
  const i = readme.indexOf(begin)
  const j = readme.indexOf(end)
  if (i < 0 || j < i) {
    console.log(`README.md has no ${begin} … ${end} block: table not written`)
  } else {
    const block = `${begin}\nMeasured by \`npm run bench\` on ${run.startedAt.slice(0, 16).replace('T', ' ')} UTC: ${run.cpus} cores (${run.cpuModel}), Node ${run.node}, load average ${run.loadBefore.join(' ')} before and ${run.loadAfter.join(' ')} after (the machine was shared: a load above the core count slows every figure).\n\n${table}\n${end}`
    writeFileSync(readmeFile, readme.slice(0, i) + block + readme.slice(j + end.length))
    console.log('README.md: performance table updated')
  }
}
process.exitCode = failed > 0 ? 1 : 0
