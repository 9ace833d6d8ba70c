import { orderByTopology, parseAttestation, parseEnvelope, type Policy, type RefMove } from '@quorate/core'
import type { Store } from '@quorate/store'

/**
 * Which commits of a repository the node lists, and in what order (issue 14 item 5: no single
 * signer may bury what a quorum observed). Candidates come per organization: each organization's
 * builders' newest ref observations (a bounded window of each key's own log), so a member key that
 * floods observations of invented commits fills only its own organization's slice. A commit is
 * verified when threshold organizations observed it on a ref, or when this node's own key did
 * (its watcher saw it in the node's own git mirror); verified commits are ordered by git topology
 * as the observations show it, never by the time this node received them. The rest are
 * unverified claims: listed apart, bounded, with who claimed them.
 */

/** Log positions read per signer key (an honest builder signs about two per commit: observation and result). */
export const RECENT_LOG_WINDOW = 400
/** Commits kept per organization's slice. */
export const COMMITS_PER_ORG = 200
/** Unverified claims listed at most. */
export const MAX_UNVERIFIED_CLAIMS = 50

export interface UnverifiedClaim {
  commit: string
  /** The builders (and their organizations) whose ref observations name the commit. */
  claimedBy: Array<{ builder: string, org: string }>
  refs: string[]
}

export interface CommitCandidates {
  /** Verified commits, newest first by topology, with the organizations that observed each. */
  verified: Array<{ commit: string, orgs: string[] }>
  unverified: UnverifiedClaim[]
  /** Per claiming builder, how many unverified commits it names (over all slices, not only the listed claims). */
  claimants: Array<{ builder: string, org: string, commits: number }>
}

export type CandidateStore = Pick<Store, 'recentRefObservations' | 'equivocationProofs'>

/**
 * The newest ref observations of every key in the policy (equivocators' left out), a bounded
 * window per key. Stored envelopes were verified when they came in; keys no longer in the policy
 * are not read at all.
 */
export async function recentRefMoves (store: CandidateStore, policy: Policy, repoId: string, opts: { window?: number } = {}): Promise<RefMove[]> {
  const window = opts.window ?? RECENT_LOG_WINDOW
  const equivocators = new Set((await store.equivocationProofs(repoId)).map(p => p.keyid))
  const excludedBuilders = new Set([...equivocators].map(k => policy.keys.get(k)?.builder).filter((b): b is string => b !== undefined))
  const moves: RefMove[] = []
  const keys = [...policy.keys.values()].filter(k => !excludedBuilders.has(k.builder))
  const perKey = await Promise.all(keys.map(async k => await store.recentRefObservations(repoId, k.keyid, window)))
  keys.forEach((k, i) => {
    for (const bytes of perKey[i]) {
      try {
        const e = parseEnvelope(JSON.parse(Buffer.from(bytes).toString('utf8')))
        if (e.keyid !== k.keyid) continue
        const a = parseAttestation(e.payloadBytes)
        if (a.kind !== 'ref' || a.repoId !== repoId) continue
        moves.push({
          builder: k.builder, org: k.org, keyid: k.keyid, envelopeId: e.id, seq: a.log.seq, ref: a.ref, commit: a.commit,
          previous: a.previous, fastForward: a.fastForward, introduced: a.introduced, truncated: a.truncated
        })
      } catch {
        // an envelope this release cannot read: it names no commit here
      }
    }
  })
  return moves
}

/**
 * The verified commits and the unverified claims of a repository (see the module comment).
 * `ownKeyid`: this node's key, whose observations come from its own git mirror.
 */
export async function commitCandidates (store: CandidateStore, policy: Policy, repoId: string, opts: { ownKeyid?: string, limit?: number, window?: number } = {}): Promise<CommitCandidates> {
  const moves = await recentRefMoves(store, policy, repoId, { window: opts.window })
  // Each organization's slice: its builders' newest observations first, each move's commits in
  // git order (tip, then what it introduced), at most COMMITS_PER_ORG per organization.
  const bySeqDesc = [...moves].sort((a, b) => b.seq - a.seq)
  const slices = new Map<string, Map<string, number>>() // org -> commit -> position in the slice
  const claimers = new Map<string, Map<string, { builder: string, org: string }>>()
  const refsOf = new Map<string, Set<string>>()
  const ownCommits = new Set<string>()
  const orgPositions = new Map<string, number>() // per org: next position
  for (const m of bySeqDesc) {
    const slice = slices.get(m.org) ?? new Map<string, number>()
    slices.set(m.org, slice)
    for (const c of [m.commit, ...m.introduced.filter(x => x !== m.commit)]) {
      if (m.keyid === opts.ownKeyid) ownCommits.add(c)
      if (!slice.has(c)) {
        if (slice.size >= COMMITS_PER_ORG) continue
        const at = orgPositions.get(m.org) ?? 0
        slice.set(c, at)
        orgPositions.set(m.org, at + 1)
      }
      let who = claimers.get(c)
      if (who === undefined) claimers.set(c, who = new Map())
      who.set(m.builder, { builder: m.builder, org: m.org })
      let refs = refsOf.get(c)
      if (refs === undefined) refsOf.set(c, refs = new Set())
      refs.add(m.ref)
    }
  }
  // An organization's newest claims rank first wherever they came from: the best position of a
  // commit in any slice (ties broken by commit id so every node lists the same order).
  const best = new Map<string, number>()
  const orgsOf = new Map<string, string[]>()
  for (const [org, slice] of slices) {
    for (const [c, at] of slice) {
      best.set(c, Math.min(best.get(c) ?? Infinity, at))
      orgsOf.set(c, [...(orgsOf.get(c) ?? []), org])
    }
  }
  const ranked = [...best.keys()].sort((a, b) => (best.get(a)! - best.get(b)!) || (a < b ? -1 : 1))
  const isVerified = (c: string): boolean => (orgsOf.get(c)?.length ?? 0) >= policy.threshold || ownCommits.has(c)
  const verifiedIds = ranked.filter(isVerified)
  const verifiedSet = new Set(verifiedIds)
  // Topology from the moves that stay among verified commits: an edge a rogue signer claims
  // between real commits is only a tie-break, as in orderByTopology.
  const ordered = orderByTopology(moves, verifiedIds).slice(0, opts.limit ?? 200)
  const unverified: UnverifiedClaim[] = []
  const claimants = new Map<string, { builder: string, org: string, commits: number }>()
  for (const c of ranked) {
    if (verifiedSet.has(c)) continue
    for (const who of claimers.get(c)!.values()) {
      const n = claimants.get(who.builder) ?? { ...who, commits: 0 }
      n.commits++
      claimants.set(who.builder, n)
    }
    if (unverified.length >= MAX_UNVERIFIED_CLAIMS) continue
    unverified.push({
      commit: c,
      claimedBy: [...claimers.get(c)!.values()].sort((a, b) => a.builder < b.builder ? -1 : 1),
      refs: [...refsOf.get(c)!].sort()
    })
  }
  return {
    verified: ordered.map(commit => ({ commit, orgs: orgsOf.get(commit)!.sort() })),
    unverified,
    claimants: [...claimants.values()].sort((a, b) => b.commits - a.commits || (a.builder < b.builder ? -1 : 1))
  }
}
