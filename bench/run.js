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
// --table: run nothing, only write the README table again from results/latest.json
const tableOnly = args.includes('--table')
const scripts = readdirSync(here)
  .filter(f => f.endsWith('.js') && f !== 'run.js')
  .filter(f => only.length === 0 || only.some(o => f.startsWith(o)))
  .filter(() => !tableOnly)
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
    // quick: small sizes, also for scripts that take their size from the environment
    env: { ...process.env, BENCH_RESULTS: rowsFile, ...(quick ? { BENCH_QUICK: '1', QUORATE_BENCH_FILES: process.env.QUORATE_BENCH_FILES ?? '5000' } : {}) }
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
const ratio = (r) => r.ratio === null || r.ratio === undefined || !Number.isFinite(r.ratio) ? 'n/a' : r.ratio < 0.1 ? r.ratio.toFixed(3) : r.ratio.toFixed(2)
const tableOf = (rows) => [
  '| benchmark | measured | compared with (same run) | ratio | target | met | load (1/5/15 min) |',
  '|---|---|---|---|---|---|---|',
  ...rows.map(r => `| ${r.benchmark} | ${r.figure} | ${r.limit} | ${ratio(r)} | ${r.target} | ${r.meets === undefined ? '–' : r.meets ? 'yes' : '**no**'} | ${r.load} |`)
].join('\n')
console.log(`\n${tableOf(rows)}\n`)

// A quick run never touches latest.json or the README. A partial run (names given) replaces its
// rows in latest.json (by id; the others stay, each with its own time and load) and rewrites the
// README table from the result; a full run replaces everything.
if (quick) {
  writeFileSync(join(resultsDir, 'latest-quick.json'), JSON.stringify(run, null, 2) + '\n')
  console.log(`results: ${join(resultsDir, 'latest-quick.json')}`)
} else {
  const latestFile = join(resultsDir, 'latest.json')
  let latest = run
  if (tableOnly) latest = JSON.parse(readFileSync(latestFile, 'utf8'))
  else if (only.length > 0 && existsSync(latestFile)) {
    const before = JSON.parse(readFileSync(latestFile, 'utf8'))
    const ids = new Set(rows.map(r => r.id))
    const merged = [...before.rows.filter(r => !ids.has(r.id)), ...rows]
    const order = (r) => { const i = before.rows.findIndex(b => b.id === r.id); return i < 0 ? 1e9 : i }
    merged.sort((a, b) => order(a) - order(b))
    latest = { ...before, rows: merged, partialRuns: [...(before.partialRuns ?? []), { ...run, rows: undefined }] }
  }
  writeFileSync(latestFile, JSON.stringify(latest, null, 2) + '\n')
  console.log(`results: ${latestFile}`)
  const readmeFile = join(here, '..', 'README.md')
  const readme = readFileSync(readmeFile, 'utf8')
  const begin = '<!-- bench:begin -->'
  const end = '<!-- bench:end -->'
  const i = readme.indexOf(begin)
  const j = readme.indexOf(end)
  if (i < 0 || j < i) {
    console.log(`README.md has no ${begin} … ${end} block: table not written`)
  } else {
    const partial = latest.partialRuns === undefined ? '' : ` Rows re-run since then with \`node bench/run.js NAME\`: ${latest.partialRuns.map(r => `${r.scripts.join(', ')} (${r.startedAt.slice(11, 16)} UTC, load ${r.loadBefore.join(' ')})`).join('; ')}.`
    const block = `${begin}\nMeasured by \`npm run bench\` on ${latest.startedAt.slice(0, 16).replace('T', ' ')} UTC: ${latest.cpus} cores (${latest.cpuModel}), Node ${latest.node}, load average ${latest.loadBefore.join(' ')} before and ${latest.loadAfter.join(' ')} after (the machine was shared with other engineers' test runs: a load above the core count slows every figure; the ratios compare two figures taken in the same minutes).${partial}\n\n${tableOf(latest.rows)}\n${end}`
    writeFileSync(readmeFile, readme.slice(0, i) + block + readme.slice(j + end.length))
    console.log('README.md: performance table updated')
  }
}
process.exitCode = failed > 0 ? 1 : 0
