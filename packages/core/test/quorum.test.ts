import { describe, it, expect } from 'vitest'
import { decideQuorum, checkEnvelope, parseEnvelope, signStatement, makeProvenanceStatement, type Policy } from '../src/index.js'
import { builder, policyFor, buildEnvelope, failureEnvelope, refEnvelope, COMMIT, H, RECIPE } from './fixtures.js'

const a1 = builder('alice-1', 'alpha', 1)
const a2 = builder('alice-2', 'alpha', 2)
const b1 = builder('bob-1', 'beta', 3)
const c1 = builder('carol-1', 'gamma', 4)
const d1 = builder('dave-1', 'delta', 5)
const outsider = builder('mallory', 'evil', 9)

function decide (policy: Policy, envelopes: Uint8Array[], proofs: Array<[Uint8Array, Uint8Array]> = []): ReturnType<typeof decideQuorum> {
  return decideQuorum({ policy, repoId: 'hello', commit: COMMIT, envelopes, equivocationProofs: proofs })
}

describe('decideQuorum', () => {
  const policy = policyFor([a1, a2, b1, c1]) // 3 orgs, default threshold 2

  it('is pending with no envelopes, and names the builders not heard from', () => {
    const d = decide(policy, [])
    expect(d.status).toBe('pending')
    expect(d.notHeardFrom).toEqual(['alice-1', 'alice-2', 'bob-1', 'carol-1'])
    expect(d.threshold).toBe(2)
  })

  it('is pending when one organization supports a result, even with two builders', () => {
    const d = decide(policy, [buildEnvelope(a1, 'a'), buildEnvelope(a2, 'a')])
    expect(d.status).toBe('pending')
    expect(d.results[0].supportingOrgs).toEqual(['alpha'])
  })

  it('is trusted when the threshold of organizations agree, listing supporters and the dissenter', () => {
    const d = decide(policy, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b')])
    expect(d.status).toBe('trusted')
    expect(d.trusted?.narSha256).toBe(H('a'))
    expect(d.supporters.map(s => s.builder).sort()).toEqual(['alice-1', 'bob-1'])
    expect(d.dissenters.map(s => [s.builder, s.narSha256])).toEqual([['carol-1', H('b')]])
    expect(d.notHeardFrom).toEqual(['alice-2'])
  })

  it('counts an organization whose builders disagree as conflicted, supporting nothing', () => {
    const d = decide(policy, [buildEnvelope(a1, 'a'), buildEnvelope(a2, 'b'), buildEnvelope(b1, 'a')])
    expect(d.status).toBe('pending')
    expect(d.conflictedOrgs.map(c => c.org)).toEqual(['alpha'])
    const d2 = decide(policy, [buildEnvelope(a1, 'a'), buildEnvelope(a2, 'b'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'a')])
    expect(d2.status).toBe('trusted')
    expect(d2.trusted?.supportingOrgs).toEqual(['beta', 'gamma'])
  })

  it('is disputed when two results have support and neither reaches the threshold', () => {
    const p4 = policyFor([a1, b1, c1, d1]) // 4 orgs, threshold 3
    const d = decide(p4, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b'), buildEnvelope(d1, 'b')])
    expect(d.status).toBe('disputed')
    expect(d.results.map(r => r.supportingOrgs.length)).toEqual([2, 2])
  })

  it('in unanimous mode, any supported dissent makes a reached threshold disputed', () => {
    const pu = policyFor([a1, b1, c1], { mode: 'unanimous', threshold: 2 })
    expect(decide(pu, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a')]).status).toBe('trusted')
    expect(decide(pu, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b')]).status).toBe('disputed')
  })

  it('compares results whole: same narSha256 with a different file list is a different result', () => {
    const d = decide(policy, [buildEnvelope(a1, 'a'), buildEnvelope(b1, 'f'), buildEnvelope(c1, 'f')])
    // 'f' has narSha256 ffff… and file list 0000…; 'a' differs in both. Check one that differs only in file list:
    expect(d.status).toBe('trusted')
    expect(d.trusted?.narSha256).toBe(H('f'))
  })

  it('never counts unknown keys, revoked keys, forged signatures or other commits', () => {
    const revokedA = builder('alice-1', 'alpha', 11, true)
    const p = policyFor([a1, revokedA, b1, c1])
    const forged = JSON.parse(Buffer.from(buildEnvelope(c1, 'b')).toString())
    forged.signatures[0].keyid = b1.key.keyid // claims to be bob
    const d = decide(p, [
      buildEnvelope(outsider, 'b'), buildEnvelope(revokedA, 'b'), Buffer.from(JSON.stringify(forged)),
      buildEnvelope(b1, 'b', { commit: 'c'.repeat(40) }), buildEnvelope(c1, 'b')
    ])
    expect(d.status).toBe('pending')
    expect(d.results.map(r => r.builders)).toEqual([['carol-1']])
    const reasons = d.ignored.map(i => i.reason).join('\n')
    expect(reasons).toMatch(/unknown key/)
    expect(reasons).toMatch(/revoked key/)
    expect(reasons).toMatch(/bad signature/)
    expect(reasons).toMatch(/another commit/)
    // Clients and metrics match on the code, never on the words.
    expect(d.ignored.map(i => i.code).sort()).toEqual(['bad-signature', 'other-commit', 'revoked-key', 'unknown-key'])
  })

  it('treats a builder with two different results for one build key as an equivocator, with proof', () => {
    const d = decide(policy, [buildEnvelope(a1, 'a', { seq: 0 }), buildEnvelope(a1, 'b', { seq: 1 }), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b')])
    expect(d.equivocators.map(e => [e.builder, e.kind])).toEqual([['alice-1', 'conflicting-results']])
    expect(d.equivocators[0].envelopes).toHaveLength(2)
    // alice-2 (alpha) can still settle it: pending, not disputed
    expect(d.status).toBe('pending')
    expect(d.openOrgs).toEqual(['alpha'])
    expect(d.results.flatMap(r => r.builders)).not.toContain('alice-1')
  })

  it('detects a log fork (two envelopes at one sequence number) and applies stored proofs', () => {
    const fork1 = refEnvelope(a1, 3)
    const fork2 = buildEnvelope(a1, 'a', { seq: 3 })
    const d = decide(policy, [fork2, buildEnvelope(b1, 'a'), buildEnvelope(c1, 'a')], [[fork1, fork2]])
    expect(d.equivocators.map(e => e.kind)).toEqual(['log-fork'])
    expect(d.status).toBe('trusted')
    expect(d.supporters.map(s => s.builder).sort()).toEqual(['bob-1', 'carol-1'])
  })

  it('does not treat a republished envelope or a failure followed by a success as equivocation', () => {
    const e = buildEnvelope(a1, 'a')
    const d = decide(policy, [e, e, failureEnvelope(b1, 0), buildEnvelope(b1, 'a', { seq: 1 }), refEnvelope(c1)])
    expect(d.equivocators).toEqual([])
    expect(d.status).toBe('trusted')
    expect(d.failures.map(f => f.builder)).toEqual(['bob-1'])
    expect(d.refObservations.map(f => f.builder)).toEqual(['carol-1'])
  })

  it('never counts a failure as a vote', () => {
    const d = decide(policy, [failureEnvelope(a1), failureEnvelope(b1), buildEnvelope(c1, 'a')])
    expect(d.status).toBe('pending')
    expect(d.failures).toHaveLength(2)
  })

  it('lists attestations under another recipe as a mismatch under a pinned recipe', () => {
    const other = { ...RECIPE, build: ['make'] }
    const d = decide(policy, [buildEnvelope(a1, 'a', { recipe: other }), buildEnvelope(b1, 'a', { recipe: other }), buildEnvelope(c1, 'a')])
    expect(d.status).toBe('pending')
    expect(d.recipeMismatches.map(m => m.builder).sort()).toEqual(['alice-1', 'bob-1'])
  })

  it('with recipeFromRepo, the recipe is part of the compared result', () => {
    const p = policyFor([a1, b1, c1], {}, { recipe: undefined, recipeFromRepo: true })
    const other = { ...RECIPE, build: ['make'] }
    const d = decide(p, [buildEnvelope(a1, 'a', { recipe: other }), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'a')])
    expect(d.status).toBe('trusted')
    expect(d.dissenters.map(x => x.builder)).toEqual(['alice-1'])
  })
})

describe('checkEnvelope (gossip validation)', () => {
  const policy = policyFor([a1, b1, c1])

  it('accepts a valid envelope and rejects or ignores the rest with a reason', () => {
    expect(checkEnvelope(buildEnvelope(a1, 'a'), policy, { repoId: 'hello' }).verdict).toBe('accept')
    expect(checkEnvelope(buildEnvelope(outsider, 'a'), policy, { repoId: 'hello' }).verdict).toBe('ignore')
    expect(checkEnvelope(new Uint8Array(70_000), policy).verdict).toBe('reject')
    expect(checkEnvelope(Buffer.from('{nope'), policy).verdict).toBe('reject')
    expect(checkEnvelope(buildEnvelope(a1, 'a'), policy, { repoId: 'other' })).toMatchObject({ verdict: 'reject', reason: expect.stringMatching(/topic mismatch/) })
  })

  it('rejects a statement whose recipeDigest does not match its recipe', () => {
    const st = makeProvenanceStatement({
      repoId: 'hello', ref: 'refs/heads/main', commit: COMMIT, recipe: RECIPE, narSha256: H('a'), fileListSha256: H('a'), topLevelFiles: [],
      logSha256: H('1'), fingerprint: {}, builderId: 'x', invocationId: 'i', startedOn: '', finishedOn: '', log: { seq: 0, prev: null }
    }) as { predicate: { buildDefinition: { externalParameters: { recipeDigest: string } } } }
    st.predicate.buildDefinition.externalParameters.recipeDigest = H('9')
    const signed = signStatement(st as unknown as Record<string, unknown>, a1.key)
    expect(checkEnvelope(signed.bytes, policy)).toMatchObject({ verdict: 'reject', reason: expect.stringMatching(/recipeDigest/) })
    expect(parseEnvelope(signed.envelope).id).toBe(signed.id)
  })
})
