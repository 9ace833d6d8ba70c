import { describe, it, expect, afterEach } from 'vitest'
import { decisions } from '../src/decisions.js'
import { EventBus, type NodeEvent } from '../src/events.js'
import { createNodeMetrics } from '../src/metrics.js'
import { builder, policyFor, buildEnvelope, verified, tempStore, memoryLogger, COMMIT, OTHER_COMMIT } from './helpers.js'

const alpha = builder('alpha', 'a', 1)
const beta = builder('beta', 'b', 2)
const gamma = builder('gamma', 'c', 3)
const policy = policyFor([alpha, beta, gamma])
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0)) await c() })

async function setup (init: { answerCacheBytes?: number, decisionCacheBytes?: number } = {}): Promise<{ store: Awaited<ReturnType<typeof tempStore>>['store'], d: ReturnType<typeof decisions>, events: EventBus, seen: NodeEvent[], notices: unknown[], put: (bytes: Uint8Array) => Promise<void> }> {
  const t = await tempStore()
  const events = new EventBus()
  const seen: NodeEvent[] = []
  events.subscribe(e => seen.push(e))
  const notices: unknown[] = []
  const d = decisions({ announceDelayMs: 5, ...init }, { store: t.store, policy, events, logger: memoryLogger(), notify: n => notices.push(n), metrics: createNodeMetrics() })
  d.start()
  cleanups.push(async () => { await d.stop(); await t.cleanup() })
  const put = async (bytes: Uint8Array): Promise<void> => {
    const v = verified(bytes, policy)
    const out = await t.store.putEnvelope(v, bytes)
    if (out.status === 'fork') d.proofAdded(v.attestation.repoId, v.attestation.commit)
    d.envelopeAdded(v)
  }
  return { store: t.store, d, events, seen, notices, put }
}

describe('decisions', () => {
  it('answers from its cache until an envelope for that commit arrives, and leaves other commits cached', async () => {
    const { d, put } = await setup()
    await put(buildEnvelope(alpha, '1'))
    await put(buildEnvelope(alpha, '1', { seq: 1, commit: OTHER_COMMIT }))
    const first = await d.decide('hello', COMMIT)
    const other = await d.decide('hello', OTHER_COMMIT)
    expect(first.decision.status).toBe('pending')
    expect(await d.decide('hello', COMMIT)).toBe(first)
    await put(buildEnvelope(beta, '1'))
    const second = await d.decide('hello', COMMIT)
    expect(second).not.toBe(first)
    expect(second.decision.status).toBe('trusted')
    expect(second.envelopes).toHaveLength(2)
    expect(await d.decide('hello', OTHER_COMMIT)).toBe(other)
  })

  it('keeps whole answers and decisions within their memory budgets, least recently used dropped first', async () => {
    const commits = ['1', '2', '3'].map(c => c.repeat(40))
    const envelopes = commits.map((c, i) => buildEnvelope(alpha, String(i + 1), { seq: i, commit: c }))
    // an answer of one envelope counts 8 KiB + 3 times its bytes: two fit, not three
    const largest = Math.max(...envelopes.map(e => e.byteLength))
    const { d, put } = await setup({ answerCacheBytes: 2 * (8192 + 3 * largest), decisionCacheBytes: 1024 * 1024 })
    for (const e of envelopes) await put(e)
    await d.settled() // the announcements decided all three
    const first = await d.decide('hello', commits[0])
    const second = await d.decide('hello', commits[1])
    expect(await d.decide('hello', commits[0])).toBe(first) // first is now the most recently used
    const third = await d.decide('hello', commits[2])
    expect(await d.decide('hello', commits[0])).toBe(first)
    expect(await d.decide('hello', commits[1])).not.toBe(second) // and the third's whole answer is dropped
    // decisions alone have their own budget: the third's decision is still kept
    expect(await d.decision('hello', commits[2])).toBe(third.decision)
    expect(await d.decide('hello', commits[2])).not.toBe(third)
  })

  it('moves the ref epoch of a repository only when what its ref observations say may change', async () => {
    const { d, put } = await setup()
    const e0 = d.refEpoch('hello')
    await put(buildEnvelope(alpha, '1'))
    expect(d.refEpoch('hello')).toBe(e0)
    d.proofAdded('hello', COMMIT)
    const e1 = d.refEpoch('hello')
    expect(e1).not.toBe(e0)
    d.policyChanged(policy)
    expect(d.refEpoch('hello')).not.toBe(e1)
  })

  it('keeps decisions alone in a larger cache for lists, dropped with the full one', async () => {
    const { d, put } = await setup()
    await put(buildEnvelope(alpha, '1'))
    const light = await d.decision('hello', COMMIT)
    expect(light.status).toBe('pending')
    expect(await d.decision('hello', COMMIT)).toBe(light)
    // A full answer computed later shares nothing stale: both reflect the same store.
    expect((await d.decide('hello', COMMIT)).decision.status).toBe('pending')
    await put(buildEnvelope(beta, '1'))
    const after = await d.decision('hello', COMMIT)
    expect(after).not.toBe(light)
    expect(after.status).toBe('trusted')
    expect((await d.decide('hello', COMMIT)).decision.status).toBe('trusted')
  })

  it('drops every cached decision of the repository when an equivocation proof is stored, and all of them on a policy change', async () => {
    const { d, put } = await setup()
    await put(buildEnvelope(alpha, '1'))
    await put(buildEnvelope(beta, '1'))
    await put(buildEnvelope(beta, '2', { seq: 1, commit: OTHER_COMMIT }))
    const before = await d.decide('hello', COMMIT)
    expect(before.decision.status).toBe('trusted')
    const other = await d.decide('hello', OTHER_COMMIT)
    // beta signs a different envelope at position 1 of its log: a fork, proven for the whole repository.
    await put(buildEnvelope(beta, '3', { seq: 1, commit: OTHER_COMMIT }))
    const after = await d.decide('hello', COMMIT)
    expect(after).not.toBe(before)
    expect(after.proofs).toHaveLength(1)
    expect(after.decision.equivocators.map(e => e.builder)).toEqual(['beta'])
    expect(after.decision.status).not.toBe('trusted')
    expect(await d.decide('hello', OTHER_COMMIT)).not.toBe(other)
    const cached = await d.decide('hello', COMMIT)
    d.policyChanged(policy)
    expect(await d.decide('hello', COMMIT)).not.toBe(cached)
  })

  it('announces a decision only when it changed, and counts statuses', async () => {
    const { d, put, seen } = await setup()
    const statuses = (): string[] => seen.flatMap(e => e.type === 'decision' ? [e.status] : [])
    await put(buildEnvelope(alpha, '1'))
    await d.settled()
    expect(statuses()).toEqual(['pending'])
    await put(buildEnvelope(beta, '1'))
    await put(buildEnvelope(gamma, '1'))
    await d.settled()
    expect(statuses()[0]).toBe('pending')
    expect(statuses().at(-1)).toBe('trusted')
    expect(d.statusCounts()).toMatchObject({ trusted: 1, pending: 0 })
    const announced = statuses().length
    // Nothing new for the commit: a recomputation that changes nothing is not announced again.
    d.envelopeAdded(verified(buildEnvelope(gamma, '1'), policy))
    await d.settled()
    expect(statuses()).toHaveLength(announced)
  })
})
