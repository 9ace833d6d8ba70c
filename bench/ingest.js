// Ingest: envelopes parsed, verified and stored per second on the node's gossip/sync validate path
// (the node's own `ingest` validate: core's checks against the policy, the signature on the
// verify pool's worker threads or on the main thread, the ref-observation continuity check, then
// the store's putEnvelope, real LevelDB), next to single-core native Ed25519 verifications per
// second of the same envelopes (node:crypto over the PAE bytes only: the floor of what a receiver
// must do). Measured with verifyWorkers 0 and with the node's default (BENCH_VERIFY_WORKERS
// overrides it) in the same run.
//   node bench/ingest.js [--quick]
import { verify as cryptoVerify, createPublicKey } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { parseEnvelope, parseJsonStrict } from '@quorate/core'
import { Store } from '@quorate/store'
import { EventBus, createLogger, createNodeMetrics, createVerifyPool, defaultVerifyWorkers, ingest } from '@quorate/node'
import { CACHE, QUICK, envelopeFixture, fmt, makeKeys, makePolicy, record, secs, sleep } from './lib/common.js'

const N = QUICK ? 5_000 : 50_000
/** Envelopes in flight at once on the pipelined path (what the sync receive path allows: VALIDATION_WINDOW). */
const WINDOW = 256
const keys = makeKeys(20)
const policy = makePolicy(keys, ['bench'])
const all = envelopeFixture(keys, ['bench'], QUICK ? 5_000 : 100_000).slice(0, N)

// the limit: node:crypto Ed25519 over the PAE bytes, keys as cached KeyObjects (parsing not timed)
const pubs = new Map(keys.map(k => [k.keyid, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(k.publicKeyHex, 'hex').toString('base64url') }, format: 'jwk' })]))
const prepared = all.map(b => { const p = parseEnvelope(parseJsonStrict(Buffer.from(b).toString('utf8'), 'e')); return { pae: p.pae, sig: p.signature, key: pubs.get(p.keyid) } })
function verifyAll () {
  globalThis.gc?.()
  const t = performance.now()
  for (const p of prepared) if (!cryptoVerify(null, p.pae, p.key, p.sig)) throw new Error('fixture signature does not verify')
  const ms = performance.now() - t
  console.log(`  native Ed25519 verify (one core, PAE only): ${secs(ms)}  ${fmt(N / (ms / 1000))}/s`)
  return ms
}
// measured before and after the ingest runs (the machine is shared: the mean evens out load swings)
const verifyBefore = verifyAll()

const WORKERS = process.env.BENCH_VERIFY_WORKERS !== undefined ? Number(process.env.BENCH_VERIFY_WORKERS) : defaultVerifyWorkers()
const quiet = createLogger({ format: 'json', write: () => {} })

/** A fresh store and the node's validate path over it (decisions are another row's work). */
async function run (mode, workers) {
  const dir = mkdtempSync(join(CACHE, 'ingest-'))
  const store = await Store.open(dir)
  const verifier = workers > 0 ? createVerifyPool({ workers }) : undefined
  const { validate } = ingest({}, { store, policy, decisions: { envelopeAdded () {}, proofAdded () {} }, events: new EventBus(), metrics: createNodeMetrics(), notify () {}, logger: quiet, verifier })
  const one = async (data) => {
    const verdict = await validate({ repoId: 'bench', data, from: 'bench', via: 'sync' })
    if (verdict !== 'accept') throw new Error(`unexpected ${verdict}`)
  }
  await sleep(200) // the workers start (not timed)
  globalThis.gc?.()
  try {
    const t0 = performance.now()
    if (mode === 'sequential') {
      for (const b of all) await one(b)
    } else {
      // up to WINDOW envelopes in flight: the next ones are verified while a batch is written
      const inFlight = new Set()
      for (const b of all) {
        const p = one(b).finally(() => inFlight.delete(p))
        inFlight.add(p)
        if (inFlight.size >= WINDOW) await Promise.race(inFlight)
      }
      await Promise.all(inFlight)
    }
    return performance.now() - t0
  } finally {
    await verifier?.close()
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

const seqMs = await run('sequential', 0)
console.log(`  ingest, one at a time (each put awaited), main thread verifies: ${secs(seqMs)}  ${fmt(N / (seqMs / 1000))}/s`)
const mainMs = await run('pipelined', 0)
console.log(`  ingest, pipelined (${WINDOW} in flight), main thread verifies:   ${secs(mainMs)}  ${fmt(N / (mainMs / 1000))}/s`)
// with verify workers too (the default's count, or one where the default is none), in the same run
const POOLED = Math.max(1, WORKERS)
const poolMs = await run('pipelined', POOLED)
console.log(`  ingest, pipelined (${WINDOW} in flight), ${POOLED} verify worker${POOLED === 1 ? '' : 's'}:      ${secs(poolMs)}  ${fmt(N / (poolMs / 1000))}/s`)
const ingestRate = N / ((WORKERS > 0 ? poolMs : mainMs) / 1000)
const verifyMs = (verifyBefore + verifyAll()) / 2
const verifyRate = N / (verifyMs / 1000)
const ratio = ingestRate / verifyRate
record({
  id: 'ingest',
  benchmark: `ingest (${fmt(N)} envelopes, parse + verify + LevelDB, the node's validate path)`,
  figure: `${fmt(ingestRate)}/s pipelined with verifyWorkers ${WORKERS} (the default here); ${fmt(N / ((WORKERS > 0 ? mainMs : poolMs) / 1000))}/s with ${WORKERS > 0 ? 0 : POOLED}; ${fmt(N / (seqMs / 1000))}/s one at a time`,
  limit: `${fmt(verifyRate)}/s native Ed25519 verify, one core`,
  ratio,
  target: '≥ 0.8',
  meets: ratio >= 0.8,
  values: { n: N, verifyPerSec: verifyRate, ingestPerSec: ingestRate, mainThreadPerSec: N / (mainMs / 1000), pooledPerSec: N / (poolMs / 1000), pooledWorkers: POOLED, sequentialPerSec: N / (seqMs / 1000), window: WINDOW, verifyWorkers: WORKERS }
})
