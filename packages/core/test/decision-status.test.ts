import { describe, it, expect } from 'vitest'
import { decideQuorum, refObservers, checkEnvelope, decisionNotice, memoOf, type Policy } from '../src/index.js'
import { builder, policyFor, buildEnvelope, failureEnvelope, refEnvelope, COMMIT, H } from './fixtures.js'

const a1 = builder('alice-1', 'alpha', 1)
const a2 = builder('alice-2', 'alpha', 2)
const b1 = builder('bob-1', 'beta', 3)
const c1 = builder('carol-1', 'gamma', 4)
const d1 = builder('dave-1', 'delta', 5)

function decide (policy: Policy, envelopes: Uint8Array[], proofs: Array<[Uint8Array, Uint8Array]> = []): ReturnType<typeof decideQuorum> {
  return decideQuorum({ policy, repoId: 'hello', commit: COMMIT, envelopes, equivocationProofs: proofs })
}

describe('decision statuses (DESIGN.md "The quorum decision", 4)', () => {
  const four = policyFor([a1, b1, c1, d1]) // 4 orgs, threshold 3
  const three = policyFor([a1, a2, b1, c1]) // alpha has two builders, threshold 2

  it('a fast dissenter leaves the decision pending while the fourth organization can still make it trusted', () => {
    const early = decide(four, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b')])
    expect(early.status).toBe('pending')
    expect(early.openOrgs).toEqual(['delta'])
    // the disagreement is shown, but nobody is a "dissenter" before there is a trusted result
    expect(early.results.map(r => [r.narSha256, r.supportingOrgs])).toEqual([[H('a'), ['alpha', 'beta']], [H('b'), ['gamma']]])
    expect(early.dissenters).toEqual([])
    expect(early.votes).toHaveLength(3)
    expect(early.summary).toMatch(/disagree/)
    expect(early.summary).not.toMatch(/^pending/)
    const late = decide(four, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b'), buildEnvelope(d1, 'a')])
    expect(late.status).toBe('trusted')
    expect(late.dissenters.map(d => d.builder)).toEqual(['carol-1'])
    expect(late.summary).toMatch(/1 dissenting builder: carol-1/)
  })

  it('is disputed once no result can reach the threshold and some result has support', () => {
    const d = decide(four, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b'), buildEnvelope(d1, 'b')])
    expect(d.status).toBe('disputed')
    expect(d.openOrgs).toEqual([])
    const d3 = decide(three, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'b'), buildEnvelope(c1, 'c')])
    expect(d3.status).toBe('disputed')
  })

  it('counts a final failure as an answer: a commit failing everywhere is failed at once, with the reasons', () => {
    const fails = [failureEnvelope(a1, 0, { final: true, reason: 'make: no rule' }), failureEnvelope(b1, 0, { final: true, reason: 'make: no rule' }), failureEnvelope(c1, 0, { final: true, reason: 'out of memory' })]
    // alice-2 is still open, but one org cannot reach a threshold of 2
    const d = decide(three, fails.slice(0, 2).concat(fails[2]))
    expect(d.status).toBe('failed')
    expect(d.failedBuilders).toEqual(['alice-1', 'bob-1', 'carol-1'])
    expect(d.openOrgs).toEqual(['alpha'])
    expect(d.summary).toMatch(/make: no rule/)
    expect(d.summary).toMatch(/out of memory/)
    // two failed organizations of three are enough when the third is the only one left
    const early = decide(three, [failureEnvelope(b1, 0, { final: true }), failureEnvelope(c1, 0, { final: true })])
    expect(early.status).toBe('failed')
  })

  it('keeps an organization open while a builder retries (non-final failures, and v1 failures)', () => {
    const retrying = decide(three, [failureEnvelope(a1, 0, { attempt: 1 }), failureEnvelope(b1, 0, { attempt: 1 }), failureEnvelope(c1, 0, { v1: true })])
    expect(retrying.status).toBe('pending')
    expect(retrying.openOrgs).toEqual(['alpha', 'beta', 'gamma'])
    expect(retrying.failures.map(f => [f.builder, f.attempt, f.final])).toEqual([['alice-1', 1, false], ['bob-1', 1, false], ['carol-1', 1, false]])
    // an org of two builders stays open while one of them can still answer
    const half = decide(three, [failureEnvelope(a1, 0, { final: true }), failureEnvelope(b1, 0, { final: true })])
    expect(half.openOrgs).toEqual(['alpha', 'gamma'])
    expect(half.status).toBe('pending')
  })

  it('treats a success after a non-final failure as a retry, not equivocation', () => {
    const d = decide(three, [failureEnvelope(b1, 0, { attempt: 1 }), failureEnvelope(b1, 1, { attempt: 2 }), buildEnvelope(b1, 'a', { seq: 2 }), buildEnvelope(c1, 'a')])
    expect(d.equivocators).toEqual([])
    expect(d.status).toBe('trusted')
    expect(d.failedBuilders).toEqual([])
  })

  it('opens an organization again when a final failure is followed by a newer attempt', () => {
    // an administrator asked for a rebuild: the new attempt is later in the builder's log
    const d = decide(three, [failureEnvelope(b1, 0, { final: true }), failureEnvelope(b1, 1, { attempt: 1 }), failureEnvelope(c1, 0, { final: true })])
    expect(d.failedBuilders).toEqual(['carol-1'])
    expect(d.status).toBe('pending')
  })

  it('is disputed when the build succeeded on too few organizations and failed for good on the rest', () => {
    const d = decide(four, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), failureEnvelope(c1, 0, { final: true }), failureEnvelope(d1, 0, { final: true })])
    expect(d.status).toBe('disputed')
  })

  it('a conflicted organization supports nothing; with nothing else able to answer it is failed, not pending', () => {
    const c = decide(three, [buildEnvelope(a1, 'a'), buildEnvelope(a2, 'b'), buildEnvelope(b1, 'a')])
    expect(c.status).toBe('pending')
    expect(c.conflictedOrgs.map(x => x.org)).toEqual(['alpha'])
    const c2 = decide(three, [buildEnvelope(a1, 'a'), buildEnvelope(a2, 'b'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b')])
    expect(c2.status).toBe('disputed')
    const c3 = decide(three, [buildEnvelope(a1, 'a'), buildEnvelope(a2, 'b'), failureEnvelope(b1, 0, { final: true }), failureEnvelope(c1, 0, { final: true })])
    expect(c3.status).toBe('failed')
    expect(c3.summary).toMatch(/conflicted: alpha/)
  })

  it('an equivocating builder closes its organization', () => {
    const p = policyFor([a1, b1, c1])
    const eq = [buildEnvelope(a1, 'a', { seq: 0 }), buildEnvelope(a1, 'b', { seq: 1 })]
    const d = decide(p, [...eq, buildEnvelope(b1, 'a')])
    expect(d.openOrgs).toEqual(['gamma'])
    expect(d.status).toBe('pending')
    expect(decide(p, [...eq, buildEnvelope(b1, 'a'), buildEnvelope(c1, 'a')]).status).toBe('trusted')
    const d2 = decide(p, [...eq, buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b')])
    expect(d2.status).toBe('disputed')
    expect(d2.summary).toMatch(/equivocating: alice-1/)
  })

  it('unanimous mode: pending until the threshold agrees, disputed on any supported dissent, failed when all fail', () => {
    const pu = policyFor([a1, b1, c1], { mode: 'unanimous', threshold: 2 })
    expect(decide(pu, [buildEnvelope(a1, 'a')]).status).toBe('pending')
    expect(decide(pu, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a')]).status).toBe('trusted')
    expect(decide(pu, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'b')]).status).toBe('disputed')
    expect(decide(pu, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b')]).status).toBe('disputed')
    expect(decide(pu, [buildEnvelope(a1, 'a'), failureEnvelope(b1, 0, { final: true }), failureEnvelope(c1, 0, { final: true })]).status).toBe('disputed')
    expect(decide(pu, [failureEnvelope(b1, 0, { final: true }), failureEnvelope(c1, 0, { final: true })]).status).toBe('failed')
  })

  it('a failure under another (pinned) recipe is not an answer', () => {
    const p = policyFor([a1, b1, c1], {}, { recipe: { build: ['true'], output: 'out', outputKind: 'dir' } })
    const d = decide(p, [failureEnvelope(a1, 0, { final: true }), failureEnvelope(b1, 0, { final: true })])
    expect(d.status).toBe('pending')
    expect(d.recipeMismatches).toHaveLength(2)
  })
})

describe('ref observations in decisions', () => {
  const p = policyFor([a1, b1, c1]) // threshold 2
  const second = 'b'.repeat(40)

  it('a commit brought onto the ref by a push of two commits is seen on the ref', () => {
    const obs = (b: typeof a1): Uint8Array => refEnvelope(b, 1, { commit: second, previous: 'c'.repeat(40), fastForward: true, introduced: [second, COMMIT] })
    const d = decide(p, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), obs(a1), obs(b1)])
    expect(d.status).toBe('trusted')
    expect(d.refObservations.map(o => [o.builder, o.tip, o.seen])).toEqual(expect.arrayContaining([['alice-1', second, true], ['bob-1', second, true]]))
    expect(refObservers(d, 'refs/heads/main')).toEqual({ orgs: ['alpha', 'beta'], reached: true, reachable: true })
    expect(refObservers(d, 'refs/heads/other')).toMatchObject({ reached: false, reachable: false })
  })

  it('is reachable (pending) while organizations are still open', () => {
    const d = decide(p, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), refEnvelope(a1, 1)])
    expect(refObservers(d, 'refs/heads/main')).toEqual({ orgs: ['alpha'], reached: false, reachable: true })
    const closed = decide(p, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'a'), refEnvelope(a1, 1)])
    expect(refObservers(closed, 'refs/heads/main')).toMatchObject({ reached: false, reachable: false })
  })

  it('an observation that neither has the commit as tip nor introduced it is not for this commit', () => {
    const d = decide(p, [refEnvelope(a1, 0, { commit: second, introduced: [second] })])
    expect(d.refObservations).toEqual([])
    expect(d.ignored[0].reason).toMatch(/another commit/)
  })
})

describe('statement v2 fields', () => {
  const p = policyFor([a1, b1, c1])
  it('refuses ref observations whose introduced list is inconsistent', () => {
    expect(checkEnvelope(refEnvelope(a1, 0, { introduced: ['b'.repeat(40), COMMIT] }), p).verdict).toBe('reject')
    expect(checkEnvelope(refEnvelope(a1, 0, { introduced: [COMMIT, COMMIT] }), p).verdict).toBe('reject')
    expect(checkEnvelope(refEnvelope(a1, 0, { introduced: [COMMIT, 'zz'] }), p).verdict).toBe('reject')
    expect(checkEnvelope(refEnvelope(a1, 0, { previous: 'b'.repeat(40), introduced: [] }), p).verdict).toBe('accept')
  })

  it('caps introduced at 256 commits and marks the observation truncated', () => {
    const many = [COMMIT, ...Array.from({ length: 300 }, (_, i) => i.toString(16).padStart(40, '0'))]
    const c = checkEnvelope(refEnvelope(a1, 0, { introduced: many }), p)
    expect(c.verdict).toBe('accept')
    if (c.verdict !== 'accept' || c.verified.attestation.kind !== 'ref') throw new Error('unreachable')
    expect(c.verified.attestation.introduced).toHaveLength(256)
    expect(c.verified.attestation.truncated).toBe(true)
  })

  it('reads v1 failures as attempt 1, not final', () => {
    const c = checkEnvelope(failureEnvelope(a1, 0, { v1: true }), p)
    if (c.verdict !== 'accept' || c.verified.attestation.kind !== 'failure') throw new Error(`not accepted: ${JSON.stringify(c)}`)
    expect([c.verified.attestation.attempt, c.verified.attestation.final]).toEqual([1, false])
  })
})

describe('decision notices', () => {
  const four = policyFor([a1, b1, c1, d1])
  const steps = (lists: Uint8Array[][]): Array<string | undefined> => {
    let memo: ReturnType<typeof memoOf> | undefined
    return lists.map(envs => {
      const d = decide(four, envs)
      const n = decisionNotice(memo, d)
      memo = memoOf(d)
      return n?.type
    })
  }

  it('says nothing while a fast dissenter leaves the decision pending, nor when it becomes trusted', () => {
    const base = [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a')]
    expect(steps([base, [...base, buildEnvelope(c1, 'b')], [...base, buildEnvelope(c1, 'b'), buildEnvelope(d1, 'a')]])).toEqual([undefined, undefined, undefined])
  })

  it('notifies once when a commit becomes disputed or failed, with the reason', () => {
    const disputed = [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b'), buildEnvelope(d1, 'b')]
    expect(steps([disputed.slice(0, 3), disputed, disputed])).toEqual([undefined, 'disputed', undefined])
    const fails = [a1, b1, c1].map(b => failureEnvelope(b, 0, { final: true, reason: 'no rule' }))
    const d = decide(four, fails)
    expect(decisionNotice(undefined, d)).toEqual({ type: 'failed', reason: expect.stringMatching(/no rule/) })
  })

  it('notifies when a trusted commit is later contradicted', () => {
    const p = policyFor([a1, a2, b1, c1])
    const trusted = decide(p, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a')])
    const conflicted = decide(p, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(a2, 'b')])
    expect(decisionNotice(memoOf(trusted), conflicted)).toEqual({ type: 'contradicted', reason: expect.stringMatching(/was trusted, now pending: .*disagree: alpha/) })
  })
})
