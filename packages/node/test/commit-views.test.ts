// Which commits a node lists (issue 14 item 5), on a real store: a member key flooding ref
// observations of invented commits fills only its own organization's slice; verified commits are
// those threshold organizations observed (or this node's own key), in git order; the rest are
// unverified claims, bounded, with who claimed them.
import { describe, it, expect, afterEach } from 'vitest'
import { makeRefObservationStatement, signStatement, type LogPosition } from '@quorate/core'
import { commitCandidates, mirrorMoves, MAX_UNVERIFIED_CLAIMS, COMMITS_PER_ORG, type MirrorMove } from '../src/commit-views.js'
import { latestTrusted } from '../src/ref-views.js'
import { builder, policyFor, tempStore, verified, type TestBuilder } from './helpers.js'

const alpha = builder('alpha', 'a', 1)
const beta = builder('beta', 'b', 2)
const gamma = builder('gamma', 'c', 3)
const rogue = builder('rogue', 'd', 4)
const policy = policyFor([alpha, beta, gamma, rogue], 3)
const C = (n: number): string => n.toString(16).padStart(40, '0')
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0)) await c() })

/** One signer's linked log of ref moves on main, each bringing the commits given (newest first). */
function refLog (b: TestBuilder, pushes: string[][], start: { seq: number, prev: string | null, previous: string | null } = { seq: 0, prev: null, previous: null }): Uint8Array[] {
  let { prev, previous } = start
  return pushes.map((introduced, i) => {
    const log: LogPosition = { seq: start.seq + i, prev }
    const s = signStatement(makeRefObservationStatement({ repoId: 'hello', ref: 'refs/heads/main', commit: introduced[0], previous, fastForward: previous !== null, introduced, builderId: 'x', observedOn: '', log }), b.key)
    prev = s.id
    previous = introduced[0]
    return s.bytes
  })
}

async function storeWith (logs: Uint8Array[][]) {
  const t = await tempStore()
  cleanups.push(t.cleanup)
  await t.store.putEnvelopes(logs.flat().map(bytes => ({ verified: verified(bytes, policy), bytes })))
  return t.store
}

describe('commitCandidates', () => {
  it('lists what threshold organizations observed in git order; a rogue key\'s 1,000 invented commits are only bounded claims', async () => {
    // real history: C1 then a push of C3 (with C2), then C4
    const honest = [[C(1)], [C(3), C(2)], [C(4)]]
    const flood = Array.from({ length: 1000 }, (_, i) => [C(0x100000 + i)])
    const store = await storeWith([refLog(alpha, honest), refLog(beta, honest), refLog(gamma, honest), refLog(rogue, [...honest, ...flood])])
    const out = await commitCandidates(store, policy, 'hello')
    expect(out.verified.map(v => v.commit)).toEqual([C(4), C(3), C(2), C(1)])
    expect(out.verified[0].orgs).toEqual(['a', 'b', 'c']) // the rogue's window no longer reaches back to C4
    expect(out.unverified).toHaveLength(MAX_UNVERIFIED_CLAIMS)
    expect(out.unverified[0]).toEqual({ commit: C(0x100000 + 999), claimedBy: [{ builder: 'rogue', org: 'd' }], refs: ['refs/heads/main'] })
    expect(out.claimants).toEqual([{ builder: 'rogue', org: 'd', commits: COMMITS_PER_ORG }])
    // latest: from the same windows, whatever the rogue flooded
    const latest = await latestTrusted(store, policy, 'hello', 'refs/heads/main', async (_r, commit) => ({ decision: { status: commit === C(4) ? 'trusted' : 'pending', equivocators: [], refObservations: [], openOrgs: [], threshold: 3 } as never }))
    expect(latest?.commit).toBe(C(4))
  })

  it('a commit only this node\'s own key observed is verified (its own mirror has it); one other organization\'s is a claim', async () => {
    const store = await storeWith([refLog(alpha, [[C(1)], [C(2)]]), refLog(beta, [[C(1)], [C(5)]])])
    const mine = await commitCandidates(store, policy, 'hello', { ownKeyid: alpha.key.keyid })
    expect(mine.verified.map(v => v.commit)).toEqual([C(2), C(1)])
    expect(mine.unverified.map(c => c.commit)).toEqual([C(5)])
    const observer = await commitCandidates(store, policy, 'hello')
    expect(observer.verified).toEqual([])
    expect(observer.unverified.map(c => c.commit).sort()).toEqual([C(1), C(2), C(5)])
  })

  it('an observer lists what its own mirror saw on a watched ref, in git order, and a rogue key\'s flood buries none of it', async () => {
    const flood = Array.from({ length: 1000 }, (_, i) => [C(0x200000 + i)])
    // one other organization observed C1 only; the rogue floods invented commits
    const store = await storeWith([refLog(beta, [[C(1)]]), refLog(rogue, flood)])
    const t = await tempStore()
    cleanups.push(t.cleanup)
    const seen = await mirrorMoves(t.store, ['hello'])
    // the watcher saw main at C1, then a push of C3 (with C2): newest first, as recorded
    await seen.record('hello', { ref: 'refs/heads/main', commit: C(1), previous: null, fastForward: false, introduced: [C(1)], truncated: false })
    await seen.record('hello', { ref: 'refs/heads/main', commit: C(3), previous: C(1), fastForward: true, introduced: [C(3), C(2)], truncated: false })
    const out = await commitCandidates(store, policy, 'hello', { mirrorMoves: seen.moves('hello') })
    expect(out.verified).toEqual([{ commit: C(3), orgs: [] }, { commit: C(2), orgs: [] }, { commit: C(1), orgs: ['b'] }])
    expect(out.unverified).toHaveLength(MAX_UNVERIFIED_CLAIMS)
    expect(out.unverified.every(c => c.claimedBy[0].builder === 'rogue')).toBe(true)
    // kept in the store: a restarted node still has them (the watcher does not report seen refs again)
    const again = await mirrorMoves(await t.reopen(), ['hello'])
    expect(again.moves('hello').map((m: MirrorMove) => m.commit)).toEqual([C(3), C(1)])
    // without them (before: an observer listed nothing of its own until a quorum observed it)
    expect((await commitCandidates(store, policy, 'hello')).verified).toEqual([])
  })
})
