import { describe, it, expect } from 'vitest'
import { collectRefMoves, currentChain, orderByTopology, refChainCandidates, latestTrustedCommit, type RefMove } from '../src/index.js'
import { builder, policyFor, refEnvelope, buildEnvelope } from './fixtures.js'

const a1 = builder('alice-1', 'alpha', 1)
const a2 = builder('alice-2', 'alpha', 2)
const b1 = builder('bob-1', 'beta', 3)
const c1 = builder('carol-1', 'gamma', 4)
const policy = policyFor([a1, a2, b1, c1]) // threshold 2
const C = (n: number): string => n.toString(16).padStart(40, '0')

// The history of main as one builder saw it: C1 <- C2 <- C3 (pushed with C4 together), then a rollback to C2, then C5 on top of C2.
function moves (b: typeof a1, upTo: number): Uint8Array[] {
  const all = [
    refEnvelope(b, 0, { commit: C(2), previous: null, introduced: [C(2), C(1)] }),
    refEnvelope(b, 1, { commit: C(4), previous: C(2), fastForward: true, introduced: [C(4), C(3)] }),
    refEnvelope(b, 2, { commit: C(2), previous: C(4), fastForward: false, introduced: [] }),
    refEnvelope(b, 3, { commit: C(5), previous: C(2), fastForward: true, introduced: [C(5)] })
  ]
  return all.slice(0, upTo)
}
const of = (envs: Uint8Array[], ref = 'refs/heads/main'): RefMove[] => collectRefMoves(policy, 'hello', envs, { ref })

describe('current chains', () => {
  it('follow fast-forwards back through earlier observations, newest first', () => {
    expect(currentChain(of(moves(a1, 2)))).toEqual([C(4), C(3), C(2), C(1)])
  })

  it('a rollback keeps the older commit and its ancestors, and drops what was rolled back past', () => {
    expect(currentChain(of(moves(a1, 3)))).toEqual([C(2), C(1)])
    expect(currentChain(of(moves(a1, 4)))).toEqual([C(5), C(2), C(1)])
  })

  it('a move that does not continue from the signer\'s previous tip starts the chain over', () => {
    const gap = of([refEnvelope(a1, 0, { commit: C(2), introduced: [C(2), C(1)] }), refEnvelope(a1, 5, { commit: C(9), previous: C(8), fastForward: true, introduced: [C(9)] })])
    expect(currentChain(gap)).toEqual([C(9)])
  })

  it('ignores other refs and excluded (equivocating) builders', () => {
    expect(of(moves(a1, 2), 'refs/heads/dev')).toEqual([])
    expect(collectRefMoves(policy, 'hello', [...moves(a1, 2), buildEnvelope(b1, 'a')], { excludeBuilders: new Set(['alice-1']) })).toEqual([])
  })
})

describe('latest trusted commit of a ref', () => {
  const trusted = new Set([C(1), C(2), C(3), C(4), C(5)])
  const isTrusted = (c: string): boolean => trusted.has(c)

  it('is the newest trusted commit on threshold organizations\' chains, and follows a rollback', () => {
    const before = of([...moves(a1, 2), ...moves(b1, 2)])
    expect(latestTrustedCommit(policy, before, 'refs/heads/main', isTrusted)).toEqual({ commit: C(4), orgs: ['alpha', 'beta'] })
    expect(latestTrustedCommit(policy, before, 'refs/heads/main', c => c !== C(4))?.commit).toBe(C(3))
    const after = of([...moves(a1, 3), ...moves(b1, 3)])
    expect(latestTrustedCommit(policy, after, 'refs/heads/main', isTrusted)?.commit).toBe(C(2))
  })

  it('needs threshold organizations: one organization moving alone does not change it', () => {
    const mixed = of([...moves(a1, 3), ...moves(b1, 2), ...moves(c1, 2)])
    expect(latestTrustedCommit(policy, mixed, 'refs/heads/main', isTrusted)?.commit).toBe(C(4))
    // one builder of alpha rolled back, the other not yet: alpha holds only what both have
    const split = of([...moves(a1, 3), ...moves(a2, 2), ...moves(b1, 3)])
    expect(refChainCandidates(policy, split, 'refs/heads/main').map(c => c.commit)).toEqual([C(2), C(1)])
  })
})

describe('order by topology', () => {
  it('lists a child before its parent whatever the fallback (first-seen) order says', () => {
    const m = of(moves(a1, 2))
    expect(orderByTopology(m, [C(3), C(4), C(1), C(2)])).toEqual([C(4), C(3), C(2), C(1)])
  })

  it('keeps the fallback order where observations say nothing, and survives contradictions', () => {
    expect(orderByTopology([], [C(7), C(6)])).toEqual([C(7), C(6)])
    const liar = of([refEnvelope(b1, 0, { commit: C(1), introduced: [C(1), C(2)] }), refEnvelope(c1, 0, { commit: C(2), introduced: [C(2), C(1)] })])
    expect(orderByTopology(liar, [C(1), C(2)]).sort()).toEqual([C(1), C(2)])
  })
})
