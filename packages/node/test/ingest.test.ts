import { describe, it, expect, afterEach } from 'vitest'
import { verifyEd25519 } from '@quorate/core'
import { ingest } from '../src/ingest.js'
import { decisions } from '../src/decisions.js'
import { EventBus, type NodeEvent } from '../src/events.js'
import { createNodeMetrics } from '../src/metrics.js'
import { builder, policyFor, buildEnvelope, tempStore, memoryLogger, COMMIT } from './helpers.js'

const alpha = builder('alpha', 'a', 1)
const beta = builder('beta', 'b', 2)
const stranger = builder('stranger', 'x', 7)
const policy = policyFor([alpha, beta])
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0)) await c() })

async function setup (init: { signerRate?: number, signerBurst?: number } = {}, verifier?: { verify: (k: Uint8Array, m: Uint8Array, s: Uint8Array) => Promise<boolean> }) {
  const t = await tempStore()
  const events = new EventBus()
  const seen: NodeEvent[] = []
  events.subscribe(e => seen.push(e))
  const notices: Array<{ type: string }> = []
  const metrics = createNodeMetrics()
  const logger = memoryLogger()
  const d = decisions({ announceDelayMs: 5 }, { store: t.store, policy, events, logger, notify: n => notices.push(n), metrics })
  d.start()
  const i = ingest(init, { store: t.store, policy, decisions: d, events, metrics, notify: n => notices.push(n), logger, verifier })
  cleanups.push(async () => { await d.stop(); await t.cleanup() })
  return { store: t.store, i, d, seen, notices, metrics }
}

const msg = (data: Uint8Array, via: 'gossip' | 'sync' = 'gossip') => ({ repoId: 'hello', data, from: 'peer-1', via })

describe('ingest', () => {
  it('stores a valid envelope before accepting it, then announces it and decides its commit', async () => {
    const { store, i, d, seen } = await setup()
    const bytes = buildEnvelope(alpha, '1')
    expect(await i.validate(msg(bytes))).toBe('accept')
    expect((await store.envelopesForCommit('hello', COMMIT)).map(e => e.meta.builder)).toEqual(['alpha'])
    expect(seen.filter(e => e.type === 'attestation')).toHaveLength(1)
    await d.settled()
    expect(seen.filter(e => e.type === 'decision')).toHaveLength(1)
    expect(await i.validate(msg(bytes, 'sync'))).toBe('ignore')
    expect(i.stats.received).toEqual({ accept: 1, reject: 0, ignore: 1 })
  })

  it('refuses by check code: forged signatures are rejected, unknown keys ignored, and the metrics carry the code', async () => {
    const { store, i, metrics } = await setup()
    const good = buildEnvelope(beta, '1')
    const envelope = JSON.parse(Buffer.from(good).toString('utf8'))
    envelope.signatures[0].sig = JSON.parse(Buffer.from(buildEnvelope(beta, '2')).toString('utf8')).signatures[0].sig
    const forged = new TextEncoder().encode(JSON.stringify(envelope))
    expect(await i.validate(msg(forged))).toBe('reject')
    expect(await i.validate(msg(buildEnvelope(stranger, '1')))).toBe('ignore')
    expect(await i.validate(msg(new TextEncoder().encode('{"not":"an envelope"}')))).toBe('reject')
    expect(i.stats.rejectReasons).toEqual({ 'bad-signature': 1, 'unknown-key': 1, malformed: 1 })
    const text = metrics.registry.render()
    expect(text).toMatch(/^quorate_attestations_total\{reason="bad-signature",verdict="rejected"\} 1$/m)
    expect(text).toMatch(/^quorate_attestations_total\{reason="unknown-key",verdict="ignored"\} 1$/m)
    expect(await store.envelopesForCommit('hello', COMMIT)).toEqual([])
  })

  it('budgets each signer on gossip but not on sync', async () => {
    const { i } = await setup({ signerRate: 0.001, signerBurst: 2 })
    const verdicts = []
    for (let seq = 0; seq < 4; seq++) verdicts.push(await i.validate(msg(buildEnvelope(alpha, String(seq + 1), { seq, commit: String(seq + 1).repeat(40) }))))
    expect(verdicts).toEqual(['accept', 'accept', 'ignore', 'ignore'])
    expect(await i.validate(msg(buildEnvelope(beta, '1')))).toBe('accept')
    expect(await i.validate(msg(buildEnvelope(alpha, '5', { seq: 2, commit: '5'.repeat(40) }), 'sync'))).toBe('accept')
  })

  it('stores a second envelope at a used log position as an equivocation proof, announces and notifies it once', async () => {
    const { store, i, seen, notices, d } = await setup()
    expect(await i.validate(msg(buildEnvelope(alpha, '1')))).toBe('accept')
    expect(await i.validate(msg(buildEnvelope(alpha, '2')))).toBe('accept')
    expect(await i.validate(msg(buildEnvelope(alpha, '3')))).toBe('ignore')
    expect(await store.equivocationProofs('hello')).toHaveLength(1)
    expect(seen.filter(e => e.type === 'equivocation')).toHaveLength(1)
    expect(notices.filter(n => n.type === 'equivocation')).toHaveLength(1)
    expect((await d.decide('hello', COMMIT)).decision.equivocators.map(e => e.builder)).toEqual(['alpha'])
  })

  it('takes a copy that arrives again (two sync rounds, gossip and sync) as a duplicate without verifying it twice', async () => {
    let verified = 0
    const { store, i, seen } = await setup({}, { verify: async (k, m, sig) => { verified++; await new Promise(resolve => setTimeout(resolve, 5)); return verifyEd25519(k, m, sig) } })
    const bytes = buildEnvelope(alpha, '1')
    // three copies at once, one later, and a copy with another (forged) signature
    expect(await Promise.all([bytes, bytes, bytes].map(async b => await i.validate(msg(b, 'sync'))))).toEqual(['accept', 'ignore', 'ignore'])
    expect(await i.validate(msg(bytes))).toBe('ignore')
    expect(verified).toBe(1)
    const envelope = JSON.parse(Buffer.from(bytes).toString('utf8'))
    envelope.signatures[0].sig = JSON.parse(Buffer.from(buildEnvelope(alpha, '2')).toString('utf8')).signatures[0].sig
    expect(await i.validate(msg(new TextEncoder().encode(JSON.stringify(envelope))))).toBe('reject')
    expect(verified).toBe(2)
    expect(i.stats.received).toEqual({ accept: 1, reject: 1, ignore: 3 })
    expect(seen.filter(e => e.type === 'attestation')).toHaveLength(1)
    expect(await store.envelopesForCommit('hello', COMMIT)).toHaveLength(1)
  })
})
