import { createHash } from 'node:crypto'
import { orderByTopology, parseAttestation, parseEnvelope, type Decision, type Policy, type RefMove } from '@quorate/core'
import type { Store } from '@quorate/store'
import type { Decisions } from './decisions.js'
import type { EventBus, NodeEvent } from './events.js'
import type { BuilderCell, CommitSummary, CommitsResponse, GitCommitInfo } from './api-routes.js'

/**
 * Which commits of a repository the node lists, and in what order (issue 14 item 5: no single
 * signer may bury what a quorum observed). Candidates come per organization: each organization's
 * builders' newest ref observations (a bounded window of each key's own log), so a member key that
 * floods observations of invented commits fills only its own organization's slice. A commit is
 * verified when threshold organizations observed it on a ref, or when this node's own git mirror
 * saw it on a watched ref (its own key's observations, and for an observer node, whose key signs
 * nothing, the moves its watcher recorded: see MirrorMoves); verified commits are ordered by git topology
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
  /** Verified commits, newest first by topology, with the organizations that observed each (none when only this node's own mirror saw it). */
  verified: Array<{ commit: string, orgs: string[] }>
  unverified: UnverifiedClaim[]
  /** Per claiming builder, how many unverified commits it names (over all slices, not only the listed claims). */
  claimants: Array<{ builder: string, org: string, commits: number }>
}

export type CandidateStore = Pick<Store, 'recentRefObservations' | 'equivocationProofs'>

/**
 * Parsed ref observations by the SHA-256 of their stored bytes: a recomputation after one new
 * observation parses only that one (the same bytes always parse the same, whoever reads them).
 */
export type ParsedMoves = Map<string, (Omit<RefMove, 'builder' | 'org'> & { repoId: string }) | null>
const PARSED_KEPT = 100_000

/**
 * The newest ref observations of every key in the policy (equivocators' left out), a bounded
 * window per key. Stored envelopes were verified when they came in; keys no longer in the policy
 * are not read at all.
 */
export async function recentRefMoves (store: CandidateStore, policy: Policy, repoId: string, opts: { window?: number, parsed?: ParsedMoves } = {}): Promise<RefMove[]> {
  const window = opts.window ?? RECENT_LOG_WINDOW
  const equivocators = new Set((await store.equivocationProofs(repoId)).map(p => p.keyid))
  const excludedBuilders = new Set([...equivocators].map(k => policy.keys.get(k)?.builder).filter((b): b is string => b !== undefined))
  const moves: RefMove[] = []
  const keys = [...policy.keys.values()].filter(k => !excludedBuilders.has(k.builder))
  const perKey = await Promise.all(keys.map(async k => await store.recentRefObservations(repoId, k.keyid, window)))
  const parsed = opts.parsed
  if (parsed !== undefined && parsed.size > PARSED_KEPT) parsed.clear()
  keys.forEach((k, i) => {
    for (const bytes of perKey[i]) {
      const hash = parsed === undefined ? '' : createHash('sha256').update(bytes).digest('base64')
      let move = parsed?.get(hash)
      if (move === undefined) {
        move = parseRefMove(bytes)
        parsed?.set(hash, move)
      }
      if (move === null || move.keyid !== k.keyid || move.repoId !== repoId) continue
      const { repoId: _repo, ...rest } = move
      moves.push({ builder: k.builder, org: k.org, ...rest })
    }
  })
  return moves
}

function parseRefMove (bytes: Uint8Array): (Omit<RefMove, 'builder' | 'org'> & { repoId: string }) | null {
  try {
    const e = parseEnvelope(JSON.parse(Buffer.from(bytes).toString('utf8')))
    const a = parseAttestation(e.payloadBytes)
    if (a.kind !== 'ref') return null
    return {
      keyid: e.keyid, repoId: a.repoId, envelopeId: e.id, seq: a.log.seq, ref: a.ref, commit: a.commit,
      previous: a.previous, fastForward: a.fastForward, introduced: a.introduced, truncated: a.truncated
    }
  } catch {
    return null // an envelope this release cannot read: it names no commit here
  }
}

/**
 * The verified commits and the unverified claims of a repository (see the module comment).
 * `ownKeyid`: this node's key, whose observations come from its own git mirror.
 */
export async function commitCandidates (store: CandidateStore, policy: Policy, repoId: string, opts: { ownKeyid?: string, limit?: number, window?: number, mirrorMoves?: readonly MirrorMove[], parsed?: ParsedMoves } = {}): Promise<CommitCandidates> {
  const moves = await recentRefMoves(store, policy, repoId, { window: opts.window, parsed: opts.parsed })
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
  // This node's own mirror (unsigned, so never an organization's slice): its newest moves first,
  // at most COMMITS_PER_ORG commits. No signer can add to or take from it.
  const mirrorSlice = new Map<string, number>()
  const mirrorTopology: RefMove[] = []
  for (const [i, m] of (opts.mirrorMoves ?? []).entries()) {
    mirrorTopology.push({ builder: '', org: '', keyid: '', envelopeId: '', seq: -1 - i, ...m })
    for (const c of [m.commit, ...m.introduced.filter(x => x !== m.commit)]) {
      if (mirrorSlice.has(c) || mirrorSlice.size >= COMMITS_PER_ORG) continue
      mirrorSlice.set(c, mirrorSlice.size)
      ownCommits.add(c)
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
  for (const [c, at] of mirrorSlice) best.set(c, Math.min(best.get(c) ?? Infinity, at))
  const ranked = [...best.keys()].sort((a, b) => (best.get(a)! - best.get(b)!) || (a < b ? -1 : 1))
  const isVerified = (c: string): boolean => (orgsOf.get(c)?.length ?? 0) >= policy.threshold || ownCommits.has(c)
  const verifiedIds = ranked.filter(isVerified)
  const verifiedSet = new Set(verifiedIds)
  // Topology from the moves that stay among verified commits: an edge a rogue signer claims
  // between real commits is only a tie-break, as in orderByTopology.
  const ordered = orderByTopology([...moves, ...mirrorTopology], verifiedIds).slice(0, opts.limit ?? 200)
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
    verified: ordered.map(commit => ({ commit, orgs: (orgsOf.get(commit) ?? []).sort() })),
    unverified,
    claimants: [...claimants.values()].sort((a, b) => b.commits - a.commits || (a.builder < b.builder ? -1 : 1))
  }
}

/** A move of a watched ref as this node's own git mirror saw it (unsigned: what the watcher fetched). */
export interface MirrorMove {
  ref: string
  commit: string
  previous: string | null
  fastForward: boolean
  /** Newest first, as in a ref observation (capped by the mirror at 256, then `truncated`). */
  introduced: string[]
  truncated: boolean
}

/** Mirror moves kept per repository (newest first), as many as the log positions read per signer key. */
export const MIRROR_MOVES_KEPT = RECENT_LOG_WINDOW

/**
 * What this node's own git mirror saw on watched refs, per repository, kept in the store so it
 * outlives a restart (the watcher remembers the refs it saw and does not report them again). A
 * member node signs these moves as ref observations; an observer node signs nothing, and this is
 * how it still lists the commits its mirror has before a quorum observed them.
 */
export interface MirrorMoves {
  /** Newest first. */
  moves: (repoId: string) => readonly MirrorMove[]
  record: (repoId: string, move: MirrorMove) => Promise<void>
}

export async function mirrorMoves (store: Pick<Store, 'getState' | 'putState'>, repoIds: readonly string[]): Promise<MirrorMoves> {
  const byRepo = new Map<string, MirrorMove[]>()
  for (const id of repoIds) byRepo.set(id, (await store.getState<MirrorMove[]>(`mirror-moves/${id}`)) ?? [])
  return {
    moves: (repoId) => byRepo.get(repoId) ?? [],
    async record (repoId, move) {
      const next = [move, ...(byRepo.get(repoId) ?? [])].slice(0, MIRROR_MOVES_KEPT)
      await store.putState(`mirror-moves/${repoId}`, next)
      byRepo.set(repoId, next)
    }
  }
}

/** Decision changes remembered per repository for `?since=` (the oldest are forgotten first). */
export const CHANGES_KEPT = 20_000
/** Commits that left a repository's list, remembered for `?since=`. */
const REMOVALS_KEPT = 10_000
/** The whole list `?since=` compares (the largest page). */
export const LIST_MAX = 1000
/** Page sizes cached per repository at once. */
const PAGES_CACHED = 8

export function builderCells (d: Decision): BuilderCell[] {
  const cells = new Map<string, BuilderCell>()
  for (const f of d.failures) cells.set(f.builder, { builder: f.builder, org: f.org, result: 'failed' })
  for (const v of d.votes) cells.set(v.builder, { builder: v.builder, org: v.org, result: d.status === 'trusted' ? 'dissents' : 'voted', narSha256: v.narSha256 })
  for (const v of d.supporters) cells.set(v.builder, { builder: v.builder, org: v.org, result: 'agrees', narSha256: v.narSha256 })
  for (const e of d.equivocators) cells.set(e.builder, { builder: e.builder, org: e.org, result: 'equivocated' })
  return [...cells.values()].sort((a, b) => a.builder < b.builder ? -1 : 1)
}

export interface CommitListsComponents {
  policy: Policy
  store: Pick<Store, 'commitInfos' | 'recentRefObservations' | 'equivocationProofs'>
  decisions: Pick<Decisions, 'decision' | 'refEpoch'>
  events: Pick<EventBus, 'subscribe' | 'newestId' | 'firstId'>
  /** This node's own builder key: its ref observations come from the node's own git mirror. */
  ownKeyid?: string
  /** What this node's own mirror saw on watched refs (an observer's only source of its own). */
  mirror?: Pick<MirrorMoves, 'moves'>
  /** Subject, author and date from the node's git mirror (unsigned); never throws. */
  gitInfo?: (repoId: string, commits: string[]) => Promise<Map<string, { subject: string, author: string, date: string }>>
}

/** `?since=` named an event this node cannot answer from: ask for the whole list again. */
export interface SinceGone { gone: string, next: number }

export interface CommitLists {
  /** A page of the list as JSON bytes, computed once and served until something it shows may have changed. */
  page: (repoId: string, limit: number) => Promise<Uint8Array>
  /** Listed commits whose decision changed, or that entered the list, after event `since`, and those that left it (JSON bytes); or why not. */
  changedSince: (repoId: string, since: number) => Promise<Uint8Array | SinceGone>
  candidates: (repoId: string) => Promise<CommitCandidates>
  stop: () => void
}

interface RepoLists {
  /** Bumped by this node's own mirror moves: which commits are listed may have changed. */
  mirrorVersion: number
  candidates?: { key: string, value: Promise<CommitCandidates> }
  /** Cached pages by size; `commits`: those a page shows (undefined while it is computed). */
  pages: Map<number, { key: string, body: Promise<Uint8Array>, commits?: Set<string> }>
  /** Per commit: the event id of its newest decision change (oldest first). */
  decided: Map<string, number>
  /** Per listed commit: when (an event id) this node first found it listed. */
  listedAt: Map<string, number>
  removedAt: Map<string, number>
  /** `?since=` below this is too old: changes after it were forgotten. */
  horizon: number
}

/**
 * The commits list of each repository, cached (issue 12: a page costs a map lookup while nothing
 * it shows changed) and answerable as "what changed since event N" for busy clients. A cached page
 * is dropped when an event names one of its commits (an attestation stored, a decision changed),
 * on an equivocation proof for the repository, when this node's own mirror moves a watched ref,
 * and when the repository's ref epoch moves (the decisions component bumps it for ref
 * observations, proofs and policy changes).
 */
export function commitLists (c: CommitListsComponents): CommitLists {
  const repos = new Map<string, RepoLists>()
  const parsed: ParsedMoves = new Map()
  const stateOf = (repoId: string): RepoLists => {
    let s = repos.get(repoId)
    if (s === undefined) {
      s = { mirrorVersion: 0, pages: new Map(), decided: new Map(), listedAt: new Map(), removedAt: new Map(), horizon: c.events.firstId - 1 }
      repos.set(repoId, s)
    }
    return s
  }
  const unsubscribe = c.events.subscribe((e: NodeEvent, id: number) => {
    if (e.type === 'build' || !c.policy.repositories.has(e.repoId)) return
    const s = stateOf(e.repoId)
    if (e.type === 'ref') s.mirrorVersion++
    // A page is dropped when an event names a commit it shows (or may show: still computed); an
    // equivocation proof changes every commit of the repository. Ref observations move the ref
    // epoch, which every page is keyed under.
    if (e.type === 'equivocation') s.pages.clear()
    if (e.type === 'attestation' || e.type === 'decision') {
      for (const [limit, page] of s.pages) if (page.commits === undefined || page.commits.has(e.commit)) s.pages.delete(limit)
    }
    if (e.type === 'decision') {
      s.decided.delete(e.commit)
      s.decided.set(e.commit, id)
      if (s.decided.size > CHANGES_KEPT) forgetOldest(s, s.decided)
    }
  })

  function forgetOldest (s: RepoLists, m: Map<string, number>): void {
    const [k, at] = m.entries().next().value as [string, number]
    m.delete(k)
    s.horizon = Math.max(s.horizon, at)
  }

  function candidates (repoId: string): Promise<CommitCandidates> {
    const s = stateOf(repoId)
    const key = `${c.decisions.refEpoch(repoId)}/${s.mirrorVersion}`
    if (s.candidates?.key === key) return s.candidates.value
    const entry = { key, value: commitCandidates(c.store, c.policy, repoId, { ownKeyid: c.ownKeyid, limit: LIST_MAX, mirrorMoves: c.mirror?.moves(repoId), parsed }) }
    s.candidates = entry
    entry.value.then(found => {
      if (s.candidates !== entry) return
      // Who entered and left the list, stamped with an event id no earlier than what caused it.
      const at = c.events.newestId()
      const now = new Set(found.verified.map(v => v.commit))
      for (const commit of now) {
        if (!s.listedAt.has(commit)) { s.listedAt.set(commit, at); s.removedAt.delete(commit) }
      }
      for (const commit of [...s.listedAt.keys()]) {
        if (now.has(commit)) continue
        s.listedAt.delete(commit)
        s.removedAt.delete(commit)
        s.removedAt.set(commit, at)
        if (s.removedAt.size > REMOVALS_KEPT) forgetOldest(s, s.removedAt)
      }
    }, () => { if (s.candidates === entry) s.candidates = undefined })
    return entry.value
  }

  async function summaries (repoId: string, commits: string[]): Promise<CommitSummary[]> {
    const [infos, git, decisions] = await Promise.all([
      c.store.commitInfos(repoId, commits),
      c.gitInfo?.(repoId, commits) ?? new Map<string, { subject: string, author: string, date: string }>(),
      Promise.all(commits.map(async commit => await c.decisions.decision(repoId, commit)))
    ])
    return commits.map((commit, i) => {
      const d = decisions[i]
      const g = git.get(commit)
      const gitInfo: GitCommitInfo | undefined = g !== undefined ? { ...g, unsigned: true } : undefined
      return { ...(gitInfo !== undefined ? { git: gitInfo } : {}), commit, firstSeen: new Date(infos[i]?.firstSeen ?? 0).toISOString(), status: d.status, narSha256: d.trusted?.narSha256 ?? null, supportingOrgs: d.trusted?.supportingOrgs ?? [], summary: d.summary, builders: builderCells(d) }
    })
  }

  const encode = (body: CommitsResponse): Uint8Array => Buffer.from(JSON.stringify(body))

  async function computePage (repoId: string, limit: number, next: number, shown: (commits: string[]) => void): Promise<Uint8Array> {
    const found = await candidates(repoId)
    const listed = found.verified.slice(0, limit).map(v => v.commit)
    const commits = await summaries(repoId, listed)
    shown(listed)
    return encode({ repoId, next, commits, unverifiedClaims: found.unverified, unverifiedClaimants: found.claimants })
  }

  return {
    candidates,
    page (repoId, limit) {
      const s = stateOf(repoId)
      const key = `${c.decisions.refEpoch(repoId)}/${s.mirrorVersion}`
      const hit = s.pages.get(limit)
      if (hit?.key === key) return hit.body
      // `next` is read before anything is: a change during the computation is reported again, never lost.
      const entry: { key: string, body: Promise<Uint8Array>, commits?: Set<string> } = { key, body: Promise.resolve(new Uint8Array()) }
      const body = computePage(repoId, limit, c.events.newestId(), commits => { entry.commits = new Set(commits) })
      entry.body = body
      s.pages.delete(limit)
      s.pages.set(limit, entry)
      if (s.pages.size > PAGES_CACHED) s.pages.delete(s.pages.keys().next().value as number)
      body.catch(() => { if (s.pages.get(limit) === entry) s.pages.delete(limit) })
      return body
    },
    async changedSince (repoId, since) {
      const s = stateOf(repoId)
      const next = c.events.newestId()
      if (since > next) return { gone: `event ${since} is not one of this node's (its newest is ${next}; event ids from before a restart or from another node are not)`, next }
      if (since < s.horizon) return { gone: `event ${since} is older than what this node remembers for ${repoId} (changes after ${s.horizon})`, next }
      const found = await candidates(repoId)
      const changed = found.verified.filter(v => (s.decided.get(v.commit) ?? -Infinity) > since || (s.listedAt.get(v.commit) ?? Infinity) > since).map(v => v.commit)
      const removed = [...s.removedAt].filter(([commit, at]) => at > since && !s.listedAt.has(commit)).map(([commit]) => commit)
      return encode({ repoId, since, next, commits: await summaries(repoId, changed), removed, unverifiedClaims: found.unverified, unverifiedClaimants: found.claimants })
    },
    stop: unsubscribe
  }
}
