// Catch-up: a fresh node syncing N attestations from a peer in another process (real libp2p on
// 127.0.0.1, real LevelDB on both sides), next to the time to verify the same N alone
// (core's checkEnvelope: parse and node:crypto Ed25519, one thread). The receiver runs the node's
// own validate path (`ingest`: checks, signatures on the verify pool's worker threads, the
// ref-observation continuity check, store.putEnvelope) with the node's default verifyWorkers
// (BENCH_VERIFY_WORKERS overrides it).
//   node bench/sync-catchup.js [--quick]      # 100k (quick: 5k)
import '../packages/network/dist/polyfills.js'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { checkEnvelope } from '@quorate/core'
import { Store } from '@quorate/store'
import { createPeerKey, startNetwork } from '@quorate/network'
import { EventBus, createLogger, createNodeMetrics, createVerifyPool, defaultVerifyWorkers, ingest } from '@quorate/node'
import { CACHE, QUICK, envelopeFixture, fmt, makeKeys, makePolicy, record, secs, sleep, storeFixture } from './lib/common.js'

const N = Number(process.env.BENCH_CATCHUP_N ?? (QUICK ? 5_000 : 100_000))
const REPO = 'bench'
const here = dirname(fileURLToPath(import.meta.url))
const keys = makeKeys(20)
const policy = makePolicy(keys, [REPO])
const envelopes = envelopeFixture(keys, [REPO], N)

// the limit: verify only, measured before and after the catch-up (the mean evens out load swings)
function verifyAll () {
  globalThis.gc?.()
  const t0 = performance.now()
  for (const e of envelopes) if (checkEnvelope(e, policy, { repoId: REPO }).verdict !== 'accept') throw new Error('fixture envelope did not verify')
  const ms = performance.now() - t0
  console.log(`  verify only (checkEnvelope): ${secs(ms)}  ${fmt(N / (ms / 1000))}/s`)
  return ms
}
const verifyBefore = verifyAll()
let t

// the source's store (not timed), then the source process
const chunks = function * () { for (let i = 0; i < envelopes.length; i += 2000) yield envelopes.slice(i, i + 2000) }
const src = await storeFixture(`store-catchup-${N}`, policy, chunks())
// the source runs with this process's node flags (so `node --cpu-prof bench/sync-catchup.js` profiles both)
const child = spawn(process.execPath, [...process.execArgv, join(here, 'lib', 'sync-source.js'), src.dir, REPO], { stdio: ['ignore', 'pipe', 'inherit'] })
const { multiaddr } = await new Promise((resolve, reject) => {
  child.once('exit', code => reject(new Error(`sync source exited (${code})`)))
  createInterface({ input: child.stdout }).once('line', line => resolve(JSON.parse(line)))
})

const dir = mkdtempSync(join(CACHE, 'catchup-'))
const dst = await Store.open(dir)
const WORKERS = process.env.BENCH_VERIFY_WORKERS !== undefined ? Number(process.env.BENCH_VERIFY_WORKERS) : defaultVerifyWorkers()
const verifier = WORKERS > 0 ? createVerifyPool({ workers: WORKERS }) : undefined
const node = ingest({}, { store: dst, policy, decisions: { envelopeAdded () {}, proofAdded () {} }, events: new EventBus(), metrics: createNodeMetrics(), notify () {}, logger: createLogger({ format: 'json', write: () => {} }), verifier })
let accepted = 0
const others = {}
const validate = async (msg) => {
  const verdict = await node.validate(msg)
  if (verdict === 'accept') accepted++
  else others[verdict] = (others[verdict] ?? 0) + 1
  return verdict
}
await sleep(200) // the verify workers start (not timed)
let catchUpMs
let b
try {
  globalThis.gc?.()
  t = performance.now()
  b = await startNetwork({
    listen: ['/ip4/127.0.0.1/tcp/0'], loopbackNetwork: true, repoIds: [REPO], syncIntervalMs: 0, syncTimeoutMs: 3_600_000,
    peerKey: await createPeerKey(), bootstrap: [multiaddr], validate, sync: { heads: async () => await dst.logHeads(), envelopesAfter: (r, k, s) => dst.envelopesAfter(r, k, s) }
  })
  while (accepted < N) {
    if (performance.now() - t > 1_200_000) throw new Error(`catch-up stalled at ${accepted}/${N}`)
    await sleep(10)
  }
  catchUpMs = performance.now() - t
} finally {
  await b?.stop()
  await verifier?.close()
  child.kill('SIGTERM')
  await dst.close()
  rmSync(dir, { recursive: true, force: true })
}
console.log(`  fresh node catching up by sync (two processes, verifyWorkers ${WORKERS}): ${secs(catchUpMs)}  ${fmt(N / (catchUpMs / 1000))}/s; other verdicts: ${JSON.stringify(others)}${verifier === undefined ? '' : `; verify pool: ${JSON.stringify(verifier.stats)}`}`)
const verifyMs = (verifyBefore + verifyAll()) / 2
const ratio = catchUpMs / verifyMs
record({
  id: 'catchup',
  benchmark: `catch-up of ${fmt(N)} attestations by sync (two processes)`,
  figure: `${secs(catchUpMs)} (${fmt(N / (catchUpMs / 1000))}/s; verifyWorkers ${WORKERS})`,
  limit: `${secs(verifyMs)} verify only (${fmt(N / (verifyMs / 1000))}/s)`,
  ratio,
  target: '≤ 1.5×',
  meets: ratio <= 1.5,
  values: { n: N, catchUpMs, verifyMs, verifyWorkers: WORKERS }
})
