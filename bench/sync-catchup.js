// Catch-up: a fresh node syncing N attestations from a peer in another process (real libp2p on
// 127.0.0.1, real LevelDB on both sides), next to the time to verify the same N alone
// (core's checkEnvelope: parse and node:crypto Ed25519). The receiver runs the node's validate
// path (checkEnvelope, then store.putEnvelope).
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
const child = spawn(process.execPath, [join(here, 'lib', 'sync-source.js'), src.dir, REPO], { stdio: ['ignore', 'pipe', 'inherit'] })
const { multiaddr } = await new Promise((resolve, reject) => {
  child.once('exit', code => reject(new Error(`sync source exited (${code})`)))
  createInterface({ input: child.stdout }).once('line', line => resolve(JSON.parse(line)))
})

const dir = mkdtempSync(join(CACHE, 'catchup-'))
const dst = await Store.open(dir)
let accepted = 0
const validate = async (msg) => {
  const c = checkEnvelope(msg.data, policy, { repoId: msg.repoId })
  if (c.verdict !== 'accept') return c.verdict
  const out = await dst.putEnvelope(c.verified, msg.data)
  if (out.status === 'duplicate') return 'ignore'
  accepted++
  return 'accept'
}
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
  child.kill('SIGTERM')
  await dst.close()
  rmSync(dir, { recursive: true, force: true })
}
console.log(`  fresh node catching up by sync (two processes): ${secs(catchUpMs)}  ${fmt(N / (catchUpMs / 1000))}/s`)
const verifyMs = (verifyBefore + verifyAll()) / 2
const ratio = catchUpMs / verifyMs
record({
  id: 'catchup',
  benchmark: `catch-up of ${fmt(N)} attestations by sync (two processes)`,
  figure: `${secs(catchUpMs)} (${fmt(N / (catchUpMs / 1000))}/s)`,
  limit: `${secs(verifyMs)} verify only (${fmt(N / (verifyMs / 1000))}/s)`,
  ratio,
  target: '≤ 1.5×',
  meets: ratio <= 1.5,
  values: { n: N, catchUpMs, verifyMs }
})
