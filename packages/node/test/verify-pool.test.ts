import { describe, it, expect, afterEach } from 'vitest'
import { preAuthEncoding, signEd25519, verifyEd25519, keyPairFromSeed, hexToBytes } from '@quorate/core'
import { createVerifyPool, defaultVerifyWorkers, MAX_RESTARTS, type VerifyPool } from '../src/verify-pool.js'
import { ingest } from '../src/ingest.js'
import { EventBus } from '../src/events.js'
import { createNodeMetrics } from '../src/metrics.js'
import { builder, policyFor, buildEnvelope, tempStore, memoryLogger } from './helpers.js'

const pools: VerifyPool[] = []
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close()
  for (const c of cleanups.splice(0)) await c()
})
const pool = (init: Parameters<typeof createVerifyPool>[0]): VerifyPool => { const p = createVerifyPool(init); pools.push(p); return p }

interface Case { name: string, publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array }

/** Valid, forged and edge-case signatures, with what the single-thread path says of each. */
function cases (): Case[] {
  const kp = keyPairFromSeed(new Uint8Array(32).fill(7))
  const other = keyPairFromSeed(new Uint8Array(32).fill(8))
  const out: Case[] = []
  for (let i = 0; i < 40; i++) {
    const message = preAuthEncoding('application/vnd.in-toto+json', new TextEncoder().encode(`statement ${i} ${'x'.repeat(i * 37)}`))
    const signature = signEd25519(message, kp.secretKey)
    out.push({ name: `valid ${i}`, publicKey: kp.publicKey, message, signature })
    const flipped = signature.slice(); flipped[i % 64] ^= 1
    out.push({ name: `flipped bit ${i}`, publicKey: kp.publicKey, message, signature: flipped })
    out.push({ name: `other key ${i}`, publicKey: other.publicKey, message, signature })
    out.push({ name: `other message ${i}`, publicKey: kp.publicKey, message: message.slice(1), signature })
  }
  // RFC 8032 7.1 test 1 (empty message)
  out.push({
    name: 'RFC 8032 test 1',
    publicKey: hexToBytes('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a')!,
    message: new Uint8Array(0),
    signature: hexToBytes('e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b')!
  })
  // S + L: non-canonical scalar, valid under permissive rules, never under RFC 8032
  const msg = new TextEncoder().encode('quorate')
  const sig = signEd25519(msg, kp.secretKey)
  const L = 2n ** 252n + 27742317777372353535851937790883648493n
  const s = BigInt('0x' + Buffer.from(sig.slice(32)).reverse().toString('hex')) + L
  out.push({ name: 'non-canonical S', publicKey: kp.publicKey, message: msg, signature: new Uint8Array([...sig.slice(0, 32), ...Buffer.from(s.toString(16).padStart(64, '0'), 'hex').reverse()]) })
  // small-order public key (the identity) with R = identity, S = 0: "valid" for any message under ZIP-215
  const identity = hexToBytes('01' + '00'.repeat(31))!
  out.push({ name: 'small-order key and R', publicKey: identity, message: msg, signature: new Uint8Array([...identity, ...new Uint8Array(32)]) })
  out.push({ name: 'not a curve point', publicKey: new Uint8Array(32).fill(0xff), message: msg, signature: sig })
  out.push({ name: 'short signature', publicKey: kp.publicKey, message: msg, signature: sig.slice(0, 63) })
  out.push({ name: 'short key', publicKey: kp.publicKey.slice(0, 31), message: msg, signature: sig })
  out.push({ name: 'all-zero signature', publicKey: kp.publicKey, message: msg, signature: new Uint8Array(64) })
  return out
}

const inline = (c: Case): boolean => verifyEd25519(c.publicKey, c.message, c.signature)

describe('verify pool (worker threads)', () => {
  it('agrees with the single-thread path on valid, forged and edge-case signatures', async () => {
    const all = cases()
    const expected = all.map(inline)
    const said = (name: string): boolean => expected[all.findIndex(c => c.name === name)]
    expect([said('valid 0'), said('RFC 8032 test 1'), said('flipped bit 0'), said('other key 0'), said('non-canonical S'), said('short key')]).toEqual([true, true, false, false, false, false])
    const p = pool({ workers: 2, maxBatch: 16 })
    expect(p.size).toBe(2)
    const got = await Promise.all(all.map(async c => await p.verify(c.publicKey, c.message, c.signature)))
    expect(all.filter((c, i) => got[i] !== expected[i]).map(c => c.name)).toEqual([])
    expect(p.stats.inWorkers).toBeGreaterThanOrEqual(all.length - 2) // the two of wrong size are answered here
    expect(p.stats.batches).toBeGreaterThan(1)
  })

  it('answers everything a crashed worker held, replaces it, and falls back to this thread when workers keep dying', async () => {
    const all = cases()
    const expected = all.map(inline)
    const crashes: string[] = []
    const workerUrl = new URL('./fixtures/crashing-verify-worker.mjs', import.meta.url)
    const p = pool({ workers: 1, maxBatch: 8, workerUrl, onCrash: e => crashes.push(e) })
    // the real worker answers the first batch, dies on the second; its replacement goes on
    for (let round = 0; round < 3; round++) {
      const got = await Promise.all(all.map(async c => await p.verify(c.publicKey, c.message, c.signature)))
      expect(got).toEqual(expected)
    }
    expect(crashes.length).toBeGreaterThanOrEqual(1)
    expect(crashes[0]).toMatch(/exited with code 3/)
    expect(p.stats.inWorkers).toBeGreaterThan(0)
    expect(p.stats.inline).toBeGreaterThan(0)

    // workers that die on every batch: after MAX_RESTARTS replacements the pool verifies here
    const hopeless = pool({ workers: 2, maxBatch: 4, workerUrl: new URL('./fixtures/always-crashing-verify-worker.mjs', import.meta.url), onCrash: () => {} })
    for (let round = 0; round < MAX_RESTARTS + 4; round++) {
      const got = await Promise.all(all.map(async c => await hopeless.verify(c.publicKey, c.message, c.signature)))
      expect(got).toEqual(expected)
    }
    expect(hopeless.size).toBe(0)
    expect(hopeless.stats.crashes).toBe(MAX_RESTARTS + 2)
    expect(hopeless.stats.inWorkers).toBe(0)
  })

  it('shuts down cleanly: what is in flight is answered, the threads exit, later calls are verified here', async () => {
    const all = cases()
    const expected = all.map(inline)
    const p = pool({ workers: 2, maxBatch: 4 })
    const pending = Promise.all(all.map(async c => await p.verify(c.publicKey, c.message, c.signature)))
    await p.close()
    expect(p.size).toBe(0)
    expect(await pending).toEqual(expected)
    expect(await p.verify(all[0].publicKey, all[0].message, all[0].signature)).toBe(true)
    expect(await p.verify(all[1].publicKey, all[1].message, all[1].signature)).toBe(false)
  })

  it('has a default of none up to two cores, then one per core beyond the second, at most two', () => {
    expect([1, 2, 3, 4, 16].map(n => defaultVerifyWorkers(n))).toEqual([0, 0, 1, 2, 2])
  })

  it('gives ingest the same verdicts as the single-thread path (forged envelopes rejected by code)', async () => {
    const alpha = builder('alpha', 'a', 1)
    const beta = builder('beta', 'b', 2)
    const policy = policyFor([alpha, beta])
    const t = await tempStore()
    cleanups.push(t.cleanup)
    const p = pool({ workers: 1 })
    const i = ingest({}, { store: t.store, policy, decisions: { envelopeAdded () {}, proofAdded () {} }, events: new EventBus(), metrics: createNodeMetrics(), notify () {}, logger: memoryLogger(), verifier: p })
    const good = buildEnvelope(beta, '1')
    const envelope = JSON.parse(Buffer.from(good).toString('utf8'))
    envelope.signatures[0].sig = JSON.parse(Buffer.from(buildEnvelope(beta, '2')).toString('utf8')).signatures[0].sig
    const forged = new TextEncoder().encode(JSON.stringify(envelope))
    const msg = (data: Uint8Array) => ({ repoId: 'hello', data, from: 'peer-1', via: 'sync' as const })
    expect(await Promise.all([forged, good, buildEnvelope(alpha, '1')].map(async d => await i.validate(msg(d))))).toEqual(['reject', 'accept', 'accept'])
    expect(i.stats.rejectReasons).toEqual({ 'bad-signature': 1 })
    expect(p.stats.inWorkers).toBe(3)
  })
})
