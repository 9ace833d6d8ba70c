// Ingest: envelopes parsed, verified and stored per second on the node's gossip/sync validate path
// (core's checkEnvelope against the policy, then the store's putEnvelope, real LevelDB), next to
// single-core native Ed25519 verifications per second of the same envelopes (node:crypto over
// the PAE bytes only: the floor of what a receiver must do).
//   node bench/ingest.js [--quick]
import { verify as cryptoVerify, createPublicKey } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { checkEnvelope, parseEnvelope, parseJsonStrict } from '@quorate/core'
import { Store } from '@quorate/store'
import { CACHE, QUICK, envelopeFixture, fmt, makeKeys, makePolicy, record, secs } from './lib/common.js'

const N = QUICK ? 5_000 : 50_000
/** Envelopes in flight at once on the pipelined path (what the sync receive path allows). */
const WINDOW = 64
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

/** The node's validate path: check (parse, topic, key, signature), then store. */
async function validate (store, bytes) {
  const c = checkEnvelope(bytes, policy, { repoId: 'bench' })
  if (c.verdict !== 'accept') throw new Error(c.reason)
  const out = await store.putEnvelope(c.verified, bytes)
  if (out.status !== 'stored') throw new Error(`unexpected ${out.status}`)
}

async function run (mode) {
  const dir = mkdtempSync(join(CACHE, 'ingest-'))
  const store = await Store.open(dir)
  globalThis.gc?.()
  try {
    const t0 = performance.now()
    if (mode === 'sequential') {
      for (const b of all) await validate(store, b)
    } else {
      // up to WINDOW envelopes in flight: the next ones are verified while a batch is written
      const inFlight = new Set()
      for (const b of all) {
        const p = validate(store, b).finally(() => inFlight.delete(p))
        inFlight.add(p)
        if (inFlight.size >= WINDOW) await Promise.race(inFlight)
      }
      await Promise.all(inFlight)
    }
    return performance.now() - t0
  } finally {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

const seqMs = await run('sequential')
console.log(`  ingest, one at a time (each put awaited):   ${secs(seqMs)}  ${fmt(N / (seqMs / 1000))}/s`)
const pipeMs = await run('pipelined')
const ingestRate = N / (pipeMs / 1000)
console.log(`  ingest, pipelined (${WINDOW} in flight):           ${secs(pipeMs)}  ${fmt(ingestRate)}/s`)
const verifyMs = (verifyBefore + verifyAll()) / 2
const verifyRate = N / (verifyMs / 1000)
const ratio = ingestRate / verifyRate
record({
  id: 'ingest',
  benchmark: `ingest (${fmt(N)} envelopes, parse + verify + LevelDB)`,
  figure: `${fmt(ingestRate)}/s pipelined; ${fmt(N / (seqMs / 1000))}/s one at a time`,
  limit: `${fmt(verifyRate)}/s native Ed25519 verify, one core`,
  ratio,
  target: '≥ 0.8',
  meets: ratio >= 0.8,
  values: { n: N, verifyPerSec: verifyRate, ingestPerSec: ingestRate, sequentialPerSec: N / (seqMs / 1000), window: WINDOW }
})
