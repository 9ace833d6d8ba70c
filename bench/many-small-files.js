// Issue 14 item 10: a build output of many small files (default 100,000 files of about 7 bytes).
// One real node process (scripts/devnet.js, sandbox "none": this measures hashing and storage, not
// the sandbox) builds a commit whose recipe writes the files; meanwhile /healthz is polled every
// 20 ms. Prints: the node's peak resident memory (VmHWM) and its memory before the build, the
// slowest /healthz answer during the build, the file list's size against the 8 MiB blob cap,
// whether a second node can fetch the file list from the first over the blob protocol, and the
// disk use of what the node keeps of the output.
// QUORATE_BENCH_FILES=N changes the count; --quick (npm run bench -- --quick) makes 2,000 files.
// It writes no rows to the README table: issue 14 item 10's before/after is in docs/reliability.md.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, commitAll, sleep } from '../scripts/devnet.js'

const N = Number(process.env.QUORATE_BENCH_FILES ?? (process.argv.includes('--quick') ? 2_000 : 100_000))
const { DEFAULT_MAX_BLOB_BYTES: BLOB_CAP } = await import('../packages/network/dist/index.js')
const work = mkdtempSync(join(tmpdir(), 'quorate-bench-files-'))

const memKb = (pid, field) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN)
const du = (path) => existsSync(path) ? Number(execFileSync('du', ['-sk', path], { encoding: 'utf8' }).split('\t')[0]) * 1024 : 0
const duApparent = (path) => existsSync(path) ? Number(execFileSync('du', ['-sb', path], { encoding: 'utf8' }).split('\t')[0]) : 0
const mb = (n) => `${(n / 1024 / 1024).toFixed(1)} MB`

const repo = join(work, 'repo')
mkdirSync(repo, { recursive: true })
execFileSync('git', ['init', '-q', '-b', 'main'], { cwd: repo })
// 1,000 directories of N/1000 files each, every file's content distinct (its number).
writeFileSync(join(repo, 'build.sh'), `#!/bin/sh
set -eu
rm -rf out && mkdir out && cd out
seq 0 999 | sed 's/^/d/' | xargs mkdir
seq 1 ${N} | awk '{ f = sprintf("d%d/f%07d", $1 % 1000, $1); print $1 > f; close(f) }'
`)
const commit = commitAll(repo, 'many small files', 1767225600)
const recipe = { build: ['sh', 'build.sh'], output: 'out', outputKind: 'dir', timeoutSeconds: 900 }
const net = await initNetwork({ dir: join(work, 'nodes'), repoUrl: repo, recipe, pollSeconds: 3600, builders: [{ name: 'alpha', org: 'alpha' }, { name: 'beta', org: 'beta' }], threshold: 2 })
const [a, b] = net.nodes
try {
  await startNodeProcess(a, {})
  await sleep(1000)
  const pid = a.child.pid
  const rssBefore = memKb(pid, 'VmRSS') * 1024
  let worst = 0
  let polls = 0
  let done = false
  const t0 = Date.now()
  const poller = (async () => {
    while (!done) {
      const t = performance.now()
      try { await fetch(`${a.url}/healthz`, { signal: AbortSignal.timeout(30_000) }) } catch {}
      worst = Math.max(worst, performance.now() - t)
      polls++
      await sleep(20)
    }
  })()
  const d = await waitFor(async () => {
    const r = await getJson(`${a.url}/v1/repos/${net.repoId}/commits/${commit}`)
    return r.envelopes.some(e => JSON.parse(Buffer.from(e.payload, 'base64').toString('utf8')).predicateType === 'https://slsa.dev/provenance/v1') ? r : undefined
  }, { timeoutMs: 900_000, intervalMs: 500, what: 'the build attestation' })
  const buildSeconds = (Date.now() - t0) / 1000
  await sleep(2000) // outputs are kept after signing
  done = true
  await poller
  const peak = memKb(pid, 'VmHWM') * 1024
  const rssAfter = memKb(pid, 'VmRSS') * 1024
  const st = d.envelopes.map(e => JSON.parse(Buffer.from(e.payload, 'base64').toString('utf8'))).find(p => p.predicateType === 'https://slsa.dev/provenance/v1')
  const fileListSha = st.predicate.runDetails.byproducts.find(x => x.name === 'file-list').digest.sha256
  const listRes = await fetch(`${a.url}/v1/blobs/${fileListSha}`)
  const listBytes = listRes.ok ? (await listRes.arrayBuffer()).byteLength : NaN
  // A second node that did not build asks its peer for the file list over the blob protocol.
  const cfg = JSON.parse(readFileSync(b.config, 'utf8'))
  cfg.pollIntervalSeconds = 86_400
  writeFileSync(b.config, JSON.stringify(cfg))
  await startNodeProcess(b, {})
  await waitFor(async () => (await getJson(`${b.url}/healthz`)).peers > 0, { timeoutMs: 30_000, what: 'the second node to connect' })
  const t1 = Date.now()
  const fetched = await fetch(`${b.url}/v1/blobs/${fileListSha}`, { signal: AbortSignal.timeout(60_000) })
  const fetchedBytes = fetched.ok ? (await fetched.arrayBuffer()).byteLength : 0
  const fetchSeconds = (Date.now() - t1) / 1000
  const data = join(a.dir, 'data')
  console.log(`files in the output: ${N.toLocaleString('en')} of about 7 bytes each`)
  console.log(`build to attestation: ${buildSeconds.toFixed(1)} s; /healthz polled ${polls} times, slowest answer ${(worst / 1000).toFixed(2)} s`)
  console.log(`node memory: ${mb(rssBefore)} before the build, peak ${mb(peak)}, ${mb(rssAfter)} after`)
  console.log(`file list: ${mb(listBytes)} (${listBytes} bytes; blob cap ${BLOB_CAP}: ${listBytes > BLOB_CAP ? 'OVER' : 'under'})`)
  console.log(`second node fetching it from its peer: ${fetched.status} ${fetched.ok ? `${fetchedBytes} bytes in ${fetchSeconds.toFixed(1)} s` : `(not fetched, ${fetchSeconds.toFixed(1)} s)`}`)
  for (const sub of ['files', 'blobs', 'store', 'db']) {
    const p = join(data, sub)
    if (existsSync(p)) console.log(`dataDir/${sub}: ${mb(du(p))} on disk (${mb(duApparent(p))} apparent)`)
  }
} finally {
  await Promise.all(net.nodes.map(n => stopNodeProcess(n)))
  rmSync(work, { recursive: true, force: true })
}
