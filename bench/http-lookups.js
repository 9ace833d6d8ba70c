// A node with 1M attestations stored (quick: 20k): its start-up time and memory, disk bytes per
// attestation (next to the envelope bytes), and HTTP throughput with a load generator on
// loopback: quorum lookups of random commits (GET /v1/repos/:repo/commits/:commit) and the
// commits list (a page), each next to the same server's GET /healthz.
//   node bench/http-lookups.js [--quick] [--lookups-only]
// --lookups-only skips the commits page (for profiling the lookups alone); BENCH_NODE_FLAGS passes
// flags to the node process, e.g. BENCH_NODE_FLAGS='--cpu-prof --cpu-prof-dir=/tmp/prof'.
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { encodeBuilderKeyFile, keyPairFromSeed } from '@quorate/core'
import { CACHE, QUICK, envelopeChunks, fmt, hex, makeKeys, policyDocument, makePolicy, record, secs, sleep, storeFixture } from './lib/common.js'
import { loadTest } from './lib/load.js'

const N = QUICK ? 20_000 : 1_000_000
const KEYS = 7
const REPOS = Array.from({ length: 10 }, (_, i) => `repo${i}`)
const DURATION = QUICK ? 2_000 : 8_000
const CONNECTIONS = 16
const here = dirname(fileURLToPath(import.meta.url))
const cli = join(here, '..', 'packages', 'cli', 'dist', 'main.js')

const keys = makeKeys(KEYS)
const policy = makePolicy(keys, REPOS)
const fixture = await storeFixture(`store-node-${N}`, policy, envelopeChunks(keys, REPOS, N))
const commitsPerRepo = Math.floor((Math.ceil(N / (KEYS * REPOS.length)) - 1) / 2) + 1

// disk: every file of the LevelDB directory, before the node opens it
const du = (dir) => readdirSync(dir).reduce((s, f) => s + statSync(join(dir, f)).size, 0)
const diskBytes = du(fixture.dir)
const perAttestation = diskBytes / fixture.count
const envelopeAvg = fixture.envelopeBytes / fixture.count

// the node's files next to the store (dataDir is the fixture directory, whose db/ is the store)
const dataDir = dirname(fixture.dir)
const nodeKey = keyPairFromSeed(new Uint8Array(32).fill(200)) // not in the policy: it verifies and serves only
writeFileSync(join(dataDir, 'builder-key.json'), JSON.stringify(encodeBuilderKeyFile(nodeKey)), { mode: 0o600 })
const doc = policyDocument(keys, REPOS)
doc.repositories = doc.repositories.map(r => ({ ...r, url: `file://${CACHE}/no-such-repository-${r.id}` }))
writeFileSync(join(dataDir, 'policy.json'), JSON.stringify(doc))
writeFileSync(join(dataDir, 'node.json'), JSON.stringify({
  name: 'bench', dataDir: '.', builderKeyFile: 'builder-key.json', peerKeyFile: 'peer-key.json', policyFile: 'policy.json',
  listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], http: { host: '127.0.0.1', port: 0 }, sandbox: 'none', pollIntervalSeconds: 86400, loopbackNetwork: true
}))

const t0 = performance.now()
const nodeFlags = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(f => f !== '')
const LOOKUPS_ONLY = process.argv.includes('--lookups-only')
const child = spawn(process.execPath, [...nodeFlags, cli, 'node', '--config', join(dataDir, 'node.json'), '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] })
const logLines = []
const url = await new Promise((resolve, reject) => {
  child.once('exit', code => reject(new Error(`node exited (${code}): ${logLines.slice(-5).join('\n')}`)))
  const onLine = (line) => {
    logLines.push(line)
    try { const j = JSON.parse(line); if (j.msg === 'ready' || j.message === 'ready' || j.event === 'ready') resolve(j.http) } catch {}
  }
  createInterface({ input: child.stdout }).on('line', onLine)
  createInterface({ input: child.stderr }).on('line', onLine)
})
// start-up: until /healthz answers
for (;;) { try { if ((await fetch(url + '/healthz')).ok) break } catch {} await sleep(5) }
const startMs = performance.now() - t0
const rss = () => { const s = readFileSync(`/proc/${child.pid}/status`, 'utf8'); return { rss: Number(/VmRSS:\s+(\d+)/.exec(s)[1]) * 1024, hwm: Number(/VmHWM:\s+(\d+)/.exec(s)[1]) * 1024 } }
const memStart = rss()
console.log(`  node start-up with ${fmt(fixture.count)} stored: ${secs(startMs)}, RSS ${fmt(memStart.rss / 2 ** 20)} MiB`)

// CPU time (all threads) the node process and this load generator spend per answered request:
// with both on the same 2 cores, 2 s / (node + client CPU per request) bounds requests per second
const clockTick = 100 // USER_HZ on Linux
const cpuMs = (stat) => { const f = readFileSync(stat, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * 1000 / clockTick }
const nodeCpuMs = () => ({ all: cpuMs(`/proc/${child.pid}/stat`), main: cpuMs(`/proc/${child.pid}/task/${child.pid}/stat`) })
async function measured (run) {
  const n0 = nodeCpuMs(); const c0 = process.cpuUsage()
  const r = await run()
  const c = process.cpuUsage(c0)
  const n1 = nodeCpuMs()
  const n = r.requests + r.errors
  return { ...r, nodeCpuUs: (n1.all - n0.all) * 1000 / n, nodeMainCpuUs: (n1.main - n0.main) * 1000 / n, clientCpuUs: (c.user + c.system) / n }
}
const cpuText = (r) => `CPU per request: node ${fmt(r.nodeCpuUs)} µs (main thread ${fmt(r.nodeMainCpuUs)} µs), load generator ${fmt(r.clientCpuUs)} µs`

let health, lookup, hot, page, pageSize
try {
  await loadTest(url, () => '/healthz', { connections: CONNECTIONS, durationMs: 500 }) // warm-up
  health = await measured(async () => await loadTest(url, () => '/healthz', { connections: CONNECTIONS, durationMs: DURATION }))
  console.log(`  GET /healthz: ${fmt(health.perSec)}/s, p50 ${health.p50.toFixed(1)} ms, p99 ${health.p99.toFixed(1)} ms; ${cpuText(health)}`)
  const rand = () => `/v1/repos/${REPOS[Math.floor(Math.random() * REPOS.length)]}/commits/${hex(1 + Math.floor(Math.random() * commitsPerRepo))}`
  await loadTest(url, rand, { connections: CONNECTIONS, durationMs: 1000 }) // warm-up (as for /healthz: the JIT compiles the lookup's code)
  lookup = await measured(async () => await loadTest(url, rand, { connections: CONNECTIONS, durationMs: DURATION }))
  console.log(`  GET /v1/repos/:repo/commits/:commit (random): ${fmt(lookup.perSec)}/s, p50 ${lookup.p50.toFixed(1)} ms, p99 ${lookup.p99.toFixed(1)} ms, ${fmt(lookup.avgBytes)} bytes, ${lookup.errors} errors; ${cpuText(lookup)}`)
  // the same lookups over a hot set of 500 commits, once each answered (the node keeps whole answers,
  // serialized, up to decisionCache.answerMiB): what a lookup costs when it is not cold
  const hotSet = Array.from({ length: 500 }, (_, i) => `/v1/repos/${REPOS[i % REPOS.length]}/commits/${hex(1 + Math.floor(i * commitsPerRepo / 500))}`)
  for (let i = 0; i < hotSet.length; i += CONNECTIONS) await Promise.all(hotSet.slice(i, i + CONNECTIONS).map(async p => await (await fetch(url + p)).arrayBuffer()))
  hot = await measured(async () => await loadTest(url, () => hotSet[Math.floor(Math.random() * hotSet.length)], { connections: CONNECTIONS, durationMs: DURATION / 2 }))
  console.log(`  GET /v1/repos/:repo/commits/:commit (500 hot commits, answers cached): ${fmt(hot.perSec)}/s, p50 ${hot.p50.toFixed(1)} ms, p99 ${hot.p99.toFixed(1)} ms (${(hot.perSec / health.perSec).toFixed(2)} of /healthz); ${cpuText(hot)}`)
  if (!LOOKUPS_ONLY) {
    // the server's page size (100 asked; a server without ?limit= answers its default page)
    pageSize = (await (await fetch(`${url}/v1/repos/${REPOS[0]}/commits?limit=100`)).json()).commits.length
    page = await loadTest(url, (i) => `/v1/repos/${REPOS[i % REPOS.length]}/commits?limit=100`, { connections: 4, durationMs: DURATION })
    console.log(`  GET /v1/repos/:repo/commits?limit=100 (${pageSize} commits a page): ${fmt(page.perSec, 1)}/s, p50 ${page.p50.toFixed(0)} ms, p99 ${page.p99.toFixed(0)} ms, ${page.errors} errors`)
  }
} finally {
  var memEnd = rss() // eslint-disable-line no-var
  child.kill('SIGTERM')
  await new Promise(resolve => child.once('exit', resolve))
}

const lookupRatio = lookup.perSec / health.perSec
record({
  id: 'lookups',
  benchmark: `HTTP quorum lookups, random commits, ${fmt(fixture.count)} stored`,
  figure: `${fmt(lookup.perSec)}/s, p99 ${lookup.p99.toFixed(1)} ms`,
  limit: `${fmt(health.perSec)}/s GET /healthz (p99 ${health.p99.toFixed(1)} ms)`,
  ratio: lookupRatio,
  target: '≥ 0.5',
  meets: lookupRatio >= 0.5,
  values: { stored: fixture.count, lookupPerSec: lookup.perSec, lookupP50: lookup.p50, lookupP99: lookup.p99, hotPerSec: hot.perSec, hotP99: hot.p99, lookupNodeCpuUs: lookup.nodeCpuUs, lookupNodeMainCpuUs: lookup.nodeMainCpuUs, lookupClientCpuUs: lookup.clientCpuUs, healthNodeCpuUs: health.nodeCpuUs, healthClientCpuUs: health.clientCpuUs, healthPerSec: health.perSec, healthP99: health.p99, connections: CONNECTIONS }
})
const pageRatio = LOOKUPS_ONLY ? 0 : page.perSec / health.perSec
if (!LOOKUPS_ONLY) record({
  id: 'commits-page',
  benchmark: `GET /v1/repos/:repo/commits (a page: ${pageSize} commits), ${fmt(fixture.count)} stored`,
  figure: `${fmt(page.perSec, 1)}/s, p99 ${page.p99.toFixed(0)} ms`,
  limit: `${fmt(health.perSec)}/s GET /healthz`,
  ratio: pageRatio,
  target: '≥ 0.3',
  meets: pageRatio >= 0.3,
  values: { stored: fixture.count, pageSize, pagePerSec: page.perSec, pageP50: page.p50, pageP99: page.p99, healthPerSec: health.perSec }
})
const diskRatio = perAttestation / envelopeAvg
record({
  id: 'disk',
  benchmark: `disk bytes per stored attestation (${fmt(fixture.count)} stored)`,
  figure: `${fmt(perAttestation)} bytes (${fmt(diskBytes / 2 ** 20)} MiB in all)`,
  limit: `${fmt(envelopeAvg)} envelope bytes`,
  ratio: diskRatio,
  target: '≤ 1.5×',
  meets: diskRatio <= 1.5,
  values: { stored: fixture.count, diskBytes, envelopeAvg }
})
record({
  id: 'startup',
  benchmark: `node start-up and memory, ${fmt(fixture.count)} stored`,
  figure: `${secs(startMs)} to /healthz; RSS ${fmt(memStart.rss / 2 ** 20)} MiB after start, peak ${fmt(memEnd.hwm / 2 ** 20)} MiB under load`,
  limit: '5 s',
  ratio: startMs / 5000,
  target: 'start-up < 5 s',
  meets: startMs < 5000,
  values: { stored: fixture.count, startMs, rssStart: memStart.rss, peakRss: memEnd.hwm }
})
