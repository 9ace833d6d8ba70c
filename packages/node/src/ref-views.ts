import {
  parseAttestation, parseEnvelope, refChainCandidates, refObservers,
  type Decision, type Policy
} from '@quorate/core'
import type { Store } from '@quorate/store'
import { recentRefMoves, type CandidateStore } from './commit-views.js'

/**
 * Ref observations as the node uses them: what to sign when a ref moves (DESIGN.md "The
 * attestation": previous, fastForward, introduced), the latest trusted commit of a ref from the
 * observers' current chains (the commit list's order is commit-views'). All from signed
 * observations, never from the time this node received something.
 */

/**
 * The tip this signer last signed for `ref` (from its log in the store) before log position
 * `beforeSeq` (default: its newest), or null: a ref observation's `previous` must equal it,
 * whatever the watcher remembers (a lost data directory forgets refs, the recovered log does not).
 */
export async function ownPreviousTip (store: Pick<Store, 'priorRefObservation'>, repoId: string, ref: string, keyid: string, beforeSeq = Number.MAX_SAFE_INTEGER): Promise<string | null> {
  const bytes = await store.priorRefObservation(repoId, ref, keyid, beforeSeq)
  if (bytes === undefined) return null
  const a = parseAttestation(parseEnvelope(JSON.parse(Buffer.from(bytes).toString('utf8'))).payloadBytes)
  return a.kind === 'ref' ? a.commit : null
}

export interface LatestAnswer { commit: string, decision: Decision, chainOrgs: string[], observedBy: string[] }

/**
 * The latest trusted commit of a ref: the newest (by topology) trusted commit that threshold
 * organizations have on their current chains. A rollback makes the older commit latest again.
 */
export async function latestTrusted (
  store: CandidateStore, policy: Policy, repoId: string, ref: string,
  decide: (repoId: string, commit: string) => Promise<{ decision: Decision }>
): Promise<LatestAnswer | undefined> {
  // Each key's newest observations (a bounded window of its own log): a member key flooding
  // observations of invented commits moves only its own chain, never the others' windows.
  const moves = await recentRefMoves(store, policy, repoId)
  for (const c of refChainCandidates(policy, moves, ref)) {
    const { decision } = await decide(repoId, c.commit)
    if (decision.status !== 'trusted') continue
    return { commit: c.commit, decision, chainOrgs: c.orgs, observedBy: refObservers(decision, ref).orgs }
  }
  return undefined
}
