import type { Policy } from './policy.js'
import { checkEnvelope } from './verify.js'

/**
 * Ref observations as the rules below use them (DESIGN.md "The attestation": seen on a ref,
 * current chain, latest trusted commit). Built from signed envelopes only, never from the time
 * a node happened to receive them.
 */
export interface RefMove {
  builder: string
  org: string
  keyid: string
  envelopeId: string
  /** Position in the signer's log: orders one signer's moves. */
  seq: number
  ref: string
  /** The new tip. */
  commit: string
  previous: string | null
  fastForward: boolean
  /** Newest first; starts with `commit` unless the move went back to an ancestor (then empty). */
  introduced: string[]
  truncated: boolean
}

export interface CollectRefMovesOptions {
  ref?: string
  /** Builders whose observations do not count (equivocators). */
  excludeBuilders?: ReadonlySet<string>
  verifiedIds?: { has: (id: string) => boolean }
}

/** Verifies untrusted envelopes against the policy and keeps the ref observations of one repository (optionally one ref). */
export function collectRefMoves (policy: Policy, repoId: string, envelopes: ReadonlyArray<Uint8Array | string | object>, opts: CollectRefMovesOptions = {}): RefMove[] {
  const out = new Map<string, RefMove>()
  for (const e of envelopes) {
    const c = checkEnvelope(e, policy, { repoId, verifiedIds: opts.verifiedIds })
    if (c.verdict !== 'accept') continue
    const v = c.verified
    const a = v.attestation
    if (a.kind !== 'ref' || (opts.ref !== undefined && a.ref !== opts.ref) || opts.excludeBuilders?.has(v.builder) === true) continue
    out.set(`${v.keyid}/${v.id}`, {
      builder: v.builder, org: v.org, keyid: v.keyid, envelopeId: v.id, seq: a.log.seq, ref: a.ref, commit: a.commit,
      previous: a.previous, fastForward: a.fastForward, introduced: a.introduced, truncated: a.truncated
    })
  }
  return [...out.values()]
}

/**
 * One signer's current chain of one ref, newest first: its newest observation's commit and
 * `introduced`, extended back through its earlier observations while each later move was a
 * fast-forward that continued from the tip before it. A move back to a commit already on the
 * chain (a rollback) keeps that commit's ancestors; any other non-fast-forward move starts over.
 */
export function currentChain (moves: readonly RefMove[]): string[] {
  const sorted = [...moves].sort((a, b) => a.seq - b.seq)
  let chain: string[] = [] // oldest first
  let index = new Map<string, number>()
  let tip: string | undefined
  for (const m of sorted) {
    const segment = m.introduced[0] === m.commit ? m.introduced : [m.commit, ...m.introduced.filter(c => c !== m.commit)]
    const linked = tip !== undefined && m.previous === tip
    if (linked && m.fastForward) {
      // keep
    } else if (linked && index.has(m.commit)) {
      const at = index.get(m.commit)!
      for (const c of chain.slice(at)) index.delete(c)
      chain = chain.slice(0, at)
    } else {
      chain = []
      index = new Map()
    }
    for (let i = segment.length - 1; i >= 0; i--) {
      if (index.has(segment[i])) continue
      index.set(segment[i], chain.length)
      chain.push(segment[i])
    }
    tip = m.commit
  }
  return chain.reverse()
}

/**
 * Each organization's current chain of one ref: the commits on the chains of all of its builders
 * that observed the ref (so a builder that has not polled yet holds the newest commit back), in
 * the first builder's order. With several keys of one builder, the key with the longest log counts.
 */
export function orgChains (policy: Policy, moves: readonly RefMove[], ref: string): Map<string, string[]> {
  const byKey = new Map<string, RefMove[]>()
  for (const m of moves) {
    if (m.ref !== ref) continue
    const k = `${m.builder}\u0000${m.keyid}`
    byKey.set(k, [...(byKey.get(k) ?? []), m])
  }
  const perBuilder = new Map<string, { org: string, moves: RefMove[] }>()
  for (const list of byKey.values()) {
    const { builder, org } = list[0]
    const prior = perBuilder.get(builder)
    const maxSeq = (l: RefMove[]): number => Math.max(...l.map(m => m.seq))
    if (prior === undefined || maxSeq(list) > maxSeq(prior.moves)) perBuilder.set(builder, { org, moves: list })
  }
  const out = new Map<string, string[]>()
  for (const org of policy.orgs) {
    const chains = [...perBuilder.entries()].filter(([, b]) => b.org === org).sort(([a], [b]) => a < b ? -1 : 1).map(([, b]) => currentChain(b.moves))
    if (chains.length === 0) continue
    const rest = chains.slice(1).map(c => new Set(c))
    out.set(org, chains[0].filter(c => rest.every(s => s.has(c))))
  }
  return out
}

/**
 * Orders commits by git topology as the observations show it (a child before its parent, from
 * each `introduced` list and from each fast-forward's link to its previous tip), newest first.
 * Where the observations say nothing, `fallback` order decides (e.g. newest first-seen first);
 * contradicting claims (only possible from dishonest signers) are broken the same way.
 */
export function orderByTopology (moves: readonly RefMove[], fallback: readonly string[]): string[] {
  const rank = new Map<string, number>()
  for (const c of fallback) if (!rank.has(c)) rank.set(c, rank.size)
  const newerThan = new Map<string, Set<string>>() // commit -> commits that must come after it
  const indegree = new Map<string, number>()
  const addEdge = (from: string, to: string): void => {
    if (from === to || !rank.has(from) || !rank.has(to)) return
    let s = newerThan.get(from)
    if (s === undefined) newerThan.set(from, s = new Set())
    if (s.has(to)) return
    s.add(to)
    indegree.set(to, (indegree.get(to) ?? 0) + 1)
  }
  for (const m of moves) {
    const seg = m.introduced.length > 0 ? m.introduced : [m.commit]
    for (let i = 0; i + 1 < seg.length; i++) addEdge(seg[i], seg[i + 1])
    if (m.fastForward && m.previous !== null) addEdge(seg[seg.length - 1], m.previous)
  }
  const all = [...rank.keys()]
  const done = new Set<string>()
  const out: string[] = []
  // Kahn's algorithm, lowest fallback rank first among the ready ones; on a cycle, the lowest rank left.
  const ready = all.filter(c => (indegree.get(c) ?? 0) === 0)
  while (out.length < all.length) {
    ready.sort((a, b) => rank.get(b)! - rank.get(a)!)
    let next = ready.pop()
    if (next === undefined || done.has(next)) {
      if (next !== undefined) continue
      next = all.find(c => !done.has(c))!
    }
    done.add(next)
    out.push(next)
    for (const to of newerThan.get(next) ?? []) {
      const d = (indegree.get(to) ?? 0) - 1
      indegree.set(to, d)
      if (d === 0 && !done.has(to)) ready.push(to)
    }
  }
  return out
}

/**
 * The commits that threshold organizations have on their current chains of `ref`, newest first
 * (by topology). The latest trusted commit of the ref is the first of these that is trusted
 * (DESIGN.md "The attestation"): callers decide trust per commit, newest first.
 */
export function refChainCandidates (policy: Policy, moves: readonly RefMove[], ref: string): Array<{ commit: string, orgs: string[] }> {
  const chains = orgChains(policy, moves, ref)
  const orgsOf = new Map<string, string[]>()
  const fallback: string[] = []
  for (const [org, chain] of chains) {
    for (const c of chain) {
      if (!orgsOf.has(c)) { orgsOf.set(c, []); fallback.push(c) }
      orgsOf.get(c)!.push(org)
    }
  }
  const eligible = fallback.filter(c => orgsOf.get(c)!.length >= policy.threshold)
  return orderByTopology(moves.filter(m => m.ref === ref), eligible).map(commit => ({ commit, orgs: orgsOf.get(commit)!.sort() }))
}

/** The latest trusted commit of a ref, given which commits are trusted (see refChainCandidates). */
export function latestTrustedCommit (policy: Policy, moves: readonly RefMove[], ref: string, isTrusted: (commit: string) => boolean): { commit: string, orgs: string[] } | undefined {
  return refChainCandidates(policy, moves, ref).find(c => isTrusted(c.commit))
}
