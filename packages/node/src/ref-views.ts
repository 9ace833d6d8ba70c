import {
  collectRefMoves, orderByTopology, parseAttestation, parseEnvelope, refChainCandidates, refObservers, sha256Hex,
  type Decision, type Policy, type RefMove
} from '@quorate/core'
import type { Store } from '@quorate/store'

/**
 * Ref observations as the node uses them: what to sign when a ref moves (DESIGN.md "The
 * attestation": previous, fastForward, introduced), the latest trusted commit of a ref from the
 * observers' current chains, and the commit timeline in git order. All from signed observations,
 * never from the time this node received something.
 */

/** What `GitMirror.refMove` answers. */
export interface MoveFacts { introduced: string[], truncated: boolean, fastForward: boolean }

/**
 * The tip this signer last signed for `ref` (from its own log in the store), or null: a ref
 * observation's `previous` must equal it, whatever the watcher remembers (a lost data directory
 * forgets refs, the recovered log does not).
 */
export async function ownPreviousTip (store: Pick<Store, 'priorRefObservation'>, repoId: string, ref: string, keyid: string): Promise<string | null> {
  const bytes = await store.priorRefObservation(repoId, ref, keyid, Number.MAX_SAFE_INTEGER)
  if (bytes === undefined) return null
  const a = parseAttestation(parseEnvelope(JSON.parse(Buffer.from(bytes).toString('utf8'))).payloadBytes)
  return a.kind === 'ref' ? a.commit : null
}

// Verified moves by envelope bytes (per policy): the timeline and "latest" are asked for often
// (the dashboard polls), and verifying every observation's signature each time would not scale.
const verifiedMoves = new Map<string, RefMove | null>()
const MAX_CACHED_MOVES = 200_000

async function movesOf (store: Pick<Store, 'refObservations' | 'equivocationProofs'>, policy: Policy, repoId: string, ref?: string): Promise<RefMove[]> {
  const proofs = await store.equivocationProofs(repoId)
  const equivocatorKeys = new Set(proofs.map(p => p.keyid))
  const out: RefMove[] = []
  for (const bytes of await store.refObservations(repoId, ref)) {
    const k = `${policy.digest}/${sha256Hex(bytes)}`
    let move = verifiedMoves.get(k)
    if (move === undefined) {
      move = collectRefMoves(policy, repoId, [JSON.parse(Buffer.from(bytes).toString('utf8')) as object])[0] ?? null
      if (verifiedMoves.size >= MAX_CACHED_MOVES) verifiedMoves.clear()
      verifiedMoves.set(k, move)
    }
    if (move !== null && (ref === undefined || move.ref === ref) && !equivocatorKeys.has(move.keyid)) out.push(move)
  }
  // A builder that equivocated under any key does not count (as in decisions).
  const excluded = new Set([...equivocatorKeys].map(k => policy.keys.get(k)?.builder).filter((b): b is string => b !== undefined))
  return out.filter(m => !excluded.has(m.builder))
}

export interface LatestAnswer { commit: string, decision: Decision, chainOrgs: string[], observedBy: string[] }

/**
 * The latest trusted commit of a ref: the newest (by topology) trusted commit that threshold
 * organizations have on their current chains. A rollback makes the older commit latest again.
 */
export async function latestTrusted (
  store: Pick<Store, 'refObservations' | 'equivocationProofs'>, policy: Policy, repoId: string, ref: string,
  decide: (repoId: string, commit: string) => Promise<{ decision: Decision }>
): Promise<LatestAnswer | undefined> {
  const moves = await movesOf(store, policy, repoId, ref)
  for (const c of refChainCandidates(policy, moves, ref).slice(0, 1000)) {
    const { decision } = await decide(repoId, c.commit)
    if (decision.status !== 'trusted') continue
    return { commit: c.commit, decision, chainOrgs: c.orgs, observedBy: refObservers(decision, ref).orgs }
  }
  return undefined
}

/** Orders commits (given newest first-seen first) by git topology as the observations show it: a child before its parent. */
export async function orderTimeline (store: Pick<Store, 'refObservations' | 'equivocationProofs'>, policy: Policy, repoId: string, commits: string[]): Promise<string[]> {
  return orderByTopology(await movesOf(store, policy, repoId), commits)
}
