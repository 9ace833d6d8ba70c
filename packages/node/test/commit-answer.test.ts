// GET /v1/repos/:repo/commits/:commit is served from a cached answer (the decision with the
// stored envelopes, serialized once): every event that changes the decision changes the served
// answer at once. Real LevelDB store, the real ingest path, decisions and HTTP server.
import { describe, it, expect, afterEach } from 'vitest'
import { makeRefObservationStatement, signStatement, parsePolicy, type Policy } from '@quorate/core'
import { httpApi } from '../src/http-api.js'
import { decisions } from '../src/decisions.js'
import { ingest } from '../src/ingest.js'
import { EventBus } from '../src/events.js'
import { createNodeMetrics } from '../src/metrics.js'
import { builder, policyFor, buildEnvelope, buildStatement, tempStore, memoryLogger, RECIPE, COMMIT, OTHER_COMMIT, apiComponents, type TestBuilder } from './helpers.js'

const alpha = builder('alpha', 'a', 1)
const beta = builder('beta', 'b', 2)
const gamma = builder('gamma', 'c', 3)
const policy = policyFor([alpha, beta, gamma], 2)
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c() })

async function setup () {
  const t = await tempStore()
  const events = new EventBus()
  const logger = memoryLogger()
  const metrics = createNodeMetrics()
  const d = decisions({ announceDelayMs: 5 }, { store: t.store, policy, events, logger, notify: () => {}, metrics })
  d.start()
  const validator = ingest({}, { store: t.store, policy, decisions: d, events, metrics, notify: () => {}, logger })
  const api = await httpApi({ host: '127.0.0.1', port: 0, configFile: 'node.json' }, apiComponents({ policy, decisions: d, store: t.store, events, metrics, logger }, {
    gitInfo: async (_repo, commits) => new Map(commits.filter(c => c === COMMIT).map(c => [c, { subject: 'the "first" commit', author: 'Ada', date: '2026-01-01T00:00:00+00:00' }]))
  }))
  cleanups.push(async () => { await api.close(); await d.stop(); await t.cleanup() })
  const put = async (bytes: Uint8Array): Promise<void> => {
    expect(await validator.validate({ repoId: 'hello', data: bytes, from: 'peer-1', via: 'gossip' })).toBe('accept')
  }
  const lookup = async (commit = COMMIT): Promise<any> => {
    const r = await fetch(`${api.url}/v1/repos/hello/commits/${commit}`)
    expect(r.status).toBe(200)
    return await r.json()
  }
  return { d, put, lookup, store: t.store }
}

function refObservation (b: TestBuilder, seq: number, prev: string | null, tip: string, introduced: string[]): Uint8Array {
  return signStatement(makeRefObservationStatement({ repoId: 'hello', ref: 'refs/heads/main', commit: tip, previous: null, fastForward: false, introduced, builderId: 'x', observedOn: '', log: { seq, prev } }), b.key).bytes
}

describe('the one-commit answer cache', () => {
  it('serves the stored envelopes as stored, with the decision, logs and git metadata', async () => {
    const { put, lookup } = await setup()
    const a = buildEnvelope(alpha, '1')
    await put(a)
    const answer = await lookup()
    expect(answer.repoId).toBe('hello')
    expect(answer.commit).toBe(COMMIT)
    expect(answer.policyDigest).toBe(policy.digest)
    expect(answer.decision.status).toBe('pending')
    expect(answer.envelopes).toEqual([JSON.parse(Buffer.from(a).toString('utf8'))])
    expect(answer.equivocationProofs).toEqual([])
    expect(answer.logs).toEqual([{ builder: 'alpha', keyid: alpha.key.keyid, seq: 0, complete: true }])
    expect(answer.git).toEqual({ subject: 'the "first" commit', author: 'Ada', date: '2026-01-01T00:00:00+00:00', unsigned: true })
    // served again from the cache: the same answer
    expect(await lookup()).toEqual(answer)
    // a commit without git metadata has no git field
    expect((await lookup(OTHER_COMMIT)).git).toBeUndefined()
  })

  it('changes at once when an envelope for the commit arrives, and when a ref observation introduces it', async () => {
    const { put, lookup } = await setup()
    await put(buildEnvelope(alpha, '1'))
    expect((await lookup()).decision.status).toBe('pending')
    await put(buildEnvelope(beta, '1'))
    const trusted = await lookup()
    expect(trusted.decision.status).toBe('trusted')
    expect(trusted.envelopes).toHaveLength(2)
    // gamma observes main moving to OTHER_COMMIT, bringing COMMIT with it
    await put(refObservation(gamma, 0, null, OTHER_COMMIT, [OTHER_COMMIT, COMMIT]))
    const observed = await lookup()
    expect(observed.envelopes).toHaveLength(3)
    expect(observed.decision.refObservations.map((r: any) => [r.builder, r.tip, r.seen])).toEqual([['gamma', OTHER_COMMIT, true]])
  })

  it('changes at once for every commit of the repository when an equivocation proof arrives', async () => {
    const { put, lookup } = await setup()
    await put(buildEnvelope(alpha, '1'))
    await put(buildEnvelope(beta, '1'))
    await put(buildEnvelope(beta, '2', { seq: 1, commit: OTHER_COMMIT }))
    expect((await lookup()).decision.status).toBe('trusted')
    expect((await lookup(OTHER_COMMIT)).decision.status).toBe('pending')
    // beta signs a different envelope at position 1 of its log: a fork, about another commit
    await put(buildEnvelope(beta, '3', { seq: 1, commit: OTHER_COMMIT }))
    const after = await lookup()
    expect(after.decision.equivocators.map((e: any) => e.builder)).toEqual(['beta'])
    expect(after.decision.status).not.toBe('trusted')
    expect(after.equivocationProofs).toHaveLength(1)
    expect(after.equivocationProofs[0]).toHaveLength(2)
    expect((await lookup(OTHER_COMMIT)).decision.equivocators.map((e: any) => e.builder)).toEqual(['beta'])
  })

  it('changes at once when the policy is reloaded', async () => {
    const { d, put, lookup } = await setup()
    await put(buildEnvelope(alpha, '1'))
    await put(buildEnvelope(beta, '1'))
    expect((await lookup()).decision.status).toBe('trusted')
    // beta's key is revoked: nothing it signed counts any more
    const revoked: Policy = parsePolicy({
      version: 1,
      builders: [alpha, beta, gamma].map(b => ({ name: b.name, org: b.org, keys: [{ publicKey: b.key.publicKeyHex, ...(b === beta ? { revoked: true } : {}) }] })),
      repositories: [{ id: 'hello', url: '/srv/hello.git', branches: ['main'], recipe: RECIPE }],
      quorum: { threshold: 2 }
    }, 'test-policy.json')
    d.policyChanged(revoked)
    const after = await lookup()
    expect(after.policyDigest).toBe(revoked.digest)
    expect(after.decision.status).toBe('pending')
    expect(after.decision.ignored.map((i: any) => i.code)).toEqual(['revoked-key'])
  })

  it('reports a log complete as soon as a gap is filled by an envelope of another commit', async () => {
    const { put, lookup } = await setup()
    const first = signStatement(buildStatement('0', { seq: 0, prev: null }, OTHER_COMMIT), alpha.key)
    // alpha's seq 1 (for COMMIT, linked to its seq 0) arrives before its seq 0 (for another commit)
    const second = signStatement(buildStatement('1', { seq: 1, prev: first.id }, COMMIT), alpha.key)
    await put(second.bytes)
    expect((await lookup()).logs).toEqual([{ builder: 'alpha', keyid: alpha.key.keyid, seq: 1, complete: false }])
    await put(first.bytes)
    expect((await lookup()).logs).toEqual([{ builder: 'alpha', keyid: alpha.key.keyid, seq: 1, complete: true }])
  })
})
