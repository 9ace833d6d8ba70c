import { canonicalize } from './canonical-json.js'
import type { Envelope } from './dsse.js'
import { sha256Hex } from './hash.js'
import type { Policy, QuorumMode } from './policy.js'
import type { BuildAttestation, Subject } from './statement.js'
import { checkEnvelope, type EnvelopeCheckCode, type VerifiedAttestation } from './verify.js'

/** Why an envelope did not count in a decision: a check code, or 'other-commit' (valid, but about another commit). */
export type IgnoredCode = EnvelopeCheckCode | 'other-commit'

/**
 * DESIGN.md "The quorum decision", 4: `trusted`; `pending` while some result can still reach the
 * threshold; `disputed` when none can and some result has support; `failed` when none can and
 * none has support.
 */
export type DecisionStatus = 'trusted' | 'pending' | 'disputed' | 'failed'

export interface ResultSummary {
  /** The compared value: resultDigest, plus recipeDigest when recipes come from the repository. */
  resultKey: string
  resultDigest: string
  narSha256: string
  recipeDigest: string
  fileListSha256: string
  subjects: Subject[]
  supportingOrgs: string[]
  builders: string[]
}

export interface BuilderVote { builder: string, org: string, keyid: string, envelopeId: string, resultKey: string, narSha256: string }

export interface Equivocation {
  builder: string
  org: string
  keyid: string
  kind: 'conflicting-results' | 'log-fork'
  /** Both signed envelopes: the proof. */
  envelopes: [Envelope, Envelope]
  envelopeIds: [string, string]
}

export interface FailureEntry {
  builder: string
  org: string
  envelopeId: string
  reason: string
  exitStatus: number | null
  timedOut: boolean
  /** 1, 2 … (v1 failures: 1). */
  attempt: number
  /** The builder will not retry (v1 failures: false). */
  final: boolean
  /** Position in the signer's log: orders a builder's attempts. */
  seq: number
}

export interface RefObservationEntry {
  builder: string
  org: string
  keyid: string
  envelopeId: string
  ref: string
  /** The observed tip (may be another commit, which brought this one onto the ref). */
  tip: string
  previous: string | null
  fastForward: boolean
  /** The decision's commit is the observed tip or among the commits the move introduced. */
  seen: boolean
  seq: number
}

export interface Decision {
  repoId: string
  commit: string
  status: DecisionStatus
  policyDigest: string
  threshold: number
  mode: QuorumMode
  organizations: number
  /** The trusted result, when status is trusted. */
  trusted?: ResultSummary
  /** Every result with a counted vote, most supported first, each with its supporters. */
  results: ResultSummary[]
  /** Every counted vote (one per builder and result). */
  votes: BuilderVote[]
  /** The votes for the trusted result from supporting organizations (empty unless trusted). */
  supporters: BuilderVote[]
  /** Votes against the trusted result (empty unless trusted: dissent is relative to a trusted result). */
  dissenters: BuilderVote[]
  conflictedOrgs: Array<{ org: string, resultKeys: string[] }>
  equivocators: Equivocation[]
  /** Organizations that have taken no side yet and can still answer (DESIGN.md "The quorum decision", 4). */
  openOrgs: string[]
  /** Builders whose latest answer for this commit is a final failure. */
  failedBuilders: string[]
  recipeMismatches: Array<{ builder: string, org: string, envelopeId: string, recipeDigest: string }>
  failures: FailureEntry[]
  refObservations: RefObservationEntry[]
  /** Envelopes that do not count, each with a reason code (for metrics and clients) and the reason in words. */
  ignored: Array<{ envelopeId?: string, keyid?: string, code: IgnoredCode, reason: string }>
  notHeardFrom: string[]
  /** Ids of every envelope the decision rests on (counted or not). */
  envelopeIds: string[]
  summary: string
}

export interface DecideInput {
  policy: Policy
  repoId: string
  commit: string
  /** Every envelope known for this commit, untrusted (bytes, JSON text or objects). */
  envelopes: ReadonlyArray<Uint8Array | string | object>
  /** Stored equivocation proofs involving this repository: pairs of untrusted envelopes. */
  equivocationProofs?: ReadonlyArray<readonly [Uint8Array | string | object, Uint8Array | string | object]>
  verifiedIds?: { has: (id: string) => boolean }
}

function resultKeyOf (a: BuildAttestation, recipeFromRepo: boolean): string {
  return recipeFromRepo ? sha256Hex(canonicalize({ recipeDigest: a.recipeDigest, resultDigest: a.resultDigest })) : a.resultDigest
}

/** Checks that two envelopes prove their signer equivocated (DESIGN.md "The quorum decision", 2). */
export function checkEquivocationProof (a: VerifiedAttestation, b: VerifiedAttestation): Equivocation['kind'] | undefined {
  if (a.keyid !== b.keyid || a.id === b.id || a.attestation.repoId !== b.attestation.repoId) return undefined
  if (a.attestation.log.seq === b.attestation.log.seq) return 'log-fork'
  const x = a.attestation
  const y = b.attestation
  if (x.kind === 'build' && y.kind === 'build' && x.commit === y.commit && x.recipeDigest === y.recipeDigest && x.resultDigest !== y.resultDigest) return 'conflicting-results'
  return undefined
}

/**
 * The quorum decision for one (repository, commit). Pure: everything it needs comes in,
 * and every envelope is verified here against the caller's policy.
 */
export function decideQuorum (input: DecideInput): Decision {
  const { policy, repoId, commit } = input
  const repo = policy.repositories.get(repoId)
  const recipeFromRepo = repo?.recipeFromRepo === true
  const ignored: Decision['ignored'] = []
  const byId = new Map<string, VerifiedAttestation>()
  for (const e of input.envelopes) {
    const c = checkEnvelope(e, policy, { repoId, verifiedIds: input.verifiedIds })
    if (c.verdict !== 'accept') {
      ignored.push({ envelopeId: c.id, keyid: c.keyid, code: c.code, reason: c.reason })
      continue
    }
    const att = c.verified.attestation
    // A ref observation counts for every commit it brought onto the ref, not only its tip.
    if (att.commit !== commit && !(att.kind === 'ref' && att.introduced.includes(commit))) {
      ignored.push({ envelopeId: c.verified.id, keyid: c.verified.keyid, code: 'other-commit', reason: `for another commit (${c.verified.attestation.commit})` })
      continue
    }
    // Keyed by signer too: the envelope id hashes only the payload, so two keys signing
    // the same statement share an id, and one must never hide the other.
    byId.set(`${c.verified.keyid}/${c.verified.id}`, c.verified)
  }
  const all = [...byId.values()].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : a.keyid < b.keyid ? -1 : 1)

  // Equivocation: in the given envelopes, and from stored proofs.
  const equivocators = new Map<string, Equivocation>()
  const noteEquivocation = (a: VerifiedAttestation, b: VerifiedAttestation): void => {
    const kind = checkEquivocationProof(a, b)
    if (kind === undefined || equivocators.has(a.builder)) return
    const [x, y] = a.id < b.id ? [a, b] : [b, a]
    equivocators.set(a.builder, { builder: a.builder, org: a.org, keyid: a.keyid, kind, envelopes: [x.envelope, y.envelope], envelopeIds: [x.id, y.id] })
  }
  const seen = new Map<string, VerifiedAttestation>()
  for (const v of all) {
    const a = v.attestation
    const seqKey = `${v.keyid}/${a.log.seq}`
    const prior = seen.get(seqKey)
    if (prior !== undefined) noteEquivocation(prior, v)
    else seen.set(seqKey, v)
    if (a.kind === 'build') {
      const bk = `${v.keyid}/${a.recipeDigest}`
      const p = seen.get(bk)
      if (p !== undefined) noteEquivocation(p, v)
      else seen.set(bk, v)
    }
  }
  for (const pair of input.equivocationProofs ?? []) {
    const [ca, cb] = pair.map(e => checkEnvelope(e, policy, { repoId, verifiedIds: input.verifiedIds }))
    if (ca.verdict === 'accept' && cb.verdict === 'accept') noteEquivocation(ca.verified, cb.verified)
  }

  const recipeMismatches: Decision['recipeMismatches'] = []
  const failures: FailureEntry[] = []
  const refObservations: RefObservationEntry[] = []
  const votes: BuilderVote[] = []
  const resultInfo = new Map<string, BuildAttestation>()
  // Per key: the newest (by log position) build or failure for this commit, to tell a final failure
  // from one the builder has since retried.
  const latestAnswer = new Map<string, { seq: number, finalFailure: boolean, builder: string }>()
  const noteAnswer = (v: VerifiedAttestation, finalFailure: boolean): void => {
    const p = latestAnswer.get(v.keyid)
    if (p === undefined || v.attestation.log.seq > p.seq) latestAnswer.set(v.keyid, { seq: v.attestation.log.seq, finalFailure, builder: v.builder })
  }
  const pinned = !recipeFromRepo ? repo?.recipeDigest : undefined
  for (const v of all) {
    const a = v.attestation
    if (a.kind === 'ref') {
      refObservations.push({ builder: v.builder, org: v.org, keyid: v.keyid, envelopeId: v.id, ref: a.ref, tip: a.commit, previous: a.previous, fastForward: a.fastForward, seen: a.commit === commit || a.introduced.includes(commit), seq: a.log.seq })
      continue
    }
    if (pinned !== undefined && a.recipeDigest !== pinned) {
      recipeMismatches.push({ builder: v.builder, org: v.org, envelopeId: v.id, recipeDigest: a.recipeDigest })
      continue
    }
    if (a.kind === 'failure') {
      failures.push({ builder: v.builder, org: v.org, envelopeId: v.id, reason: a.reason, exitStatus: a.exitStatus, timedOut: a.timedOut, attempt: a.attempt, final: a.final, seq: a.log.seq })
      if (!equivocators.has(v.builder)) noteAnswer(v, a.final)
      continue
    }
    if (equivocators.has(v.builder)) continue
    noteAnswer(v, false)
    const resultKey = resultKeyOf(a, recipeFromRepo)
    if (!resultInfo.has(resultKey)) resultInfo.set(resultKey, a)
    if (!votes.some(x => x.builder === v.builder && x.resultKey === resultKey)) {
      votes.push({ builder: v.builder, org: v.org, keyid: v.keyid, envelopeId: v.id, resultKey, narSha256: a.narSha256 })
    }
  }
  failures.sort((x, y) => x.builder < y.builder ? -1 : x.builder > y.builder ? 1 : x.seq - y.seq)
  const failedBuilders = [...new Set([...latestAnswer.values()].filter(x => x.finalFailure).map(x => x.builder))]
    .filter(b => !votes.some(v => v.builder === b)).sort()

  // Per-organization support: an org supports a result when all its counted builders attest only that result.
  const orgResults = new Map<string, Set<string>>()
  for (const v of votes) {
    let s = orgResults.get(v.org)
    if (s === undefined) orgResults.set(v.org, s = new Set())
    s.add(v.resultKey)
  }
  const conflictedOrgs: Decision['conflictedOrgs'] = []
  const support = new Map<string, string[]>()
  for (const [org, keys] of [...orgResults].sort(([a], [b]) => a < b ? -1 : 1)) {
    if (keys.size > 1) { conflictedOrgs.push({ org, resultKeys: [...keys].sort() }); continue }
    const [k] = keys
    support.set(k, [...(support.get(k) ?? []), org])
  }
  const results: ResultSummary[] = [...resultInfo].map(([resultKey, a]) => ({
    resultKey,
    resultDigest: a.resultDigest,
    narSha256: a.narSha256,
    recipeDigest: a.recipeDigest,
    fileListSha256: a.fileListSha256,
    subjects: a.subjects,
    supportingOrgs: support.get(resultKey) ?? [],
    builders: [...new Set(votes.filter(v => v.resultKey === resultKey).map(v => v.builder))].sort()
  })).sort((a, b) => b.supportingOrgs.length - a.supportingOrgs.length || (a.resultKey < b.resultKey ? -1 : 1))

  // Open: no counted result of the org is in, and one of its builders can still answer.
  const failedSet = new Set(failedBuilders)
  const openOrgs = policy.orgs.filter(org => !orgResults.has(org) &&
    [...policy.builders.values()].some(b => b.org === org && !equivocators.has(b.name) && !failedSet.has(b.name)))

  const threshold = policy.threshold
  const supported = results.filter(r => r.supportingOrgs.length > 0)
  const top = supported[0]
  const best = top?.supportingOrgs.length ?? 0
  const unanimousBlocked = policy.mode === 'unanimous' && supported.length >= 2
  let status: DecisionStatus
  let trusted: ResultSummary | undefined
  if (top !== undefined && best >= threshold && (policy.mode === 'majority' ? supported.every(r => r === top || r.supportingOrgs.length < threshold) : supported.length === 1)) {
    status = 'trusted'
    trusted = top
  } else if (best + openOrgs.length >= threshold && !unanimousBlocked) {
    status = 'pending'
  } else if (supported.length > 0) {
    status = 'disputed'
  } else {
    status = 'failed'
  }
  const supporters = trusted === undefined ? [] : votes.filter(v => v.resultKey === trusted.resultKey && trusted.supportingOrgs.includes(v.org))
  const dissenters = trusted === undefined ? [] : votes.filter(v => !supporters.includes(v))
  const heard = new Set(all.filter(v => v.attestation.kind !== 'ref').map(v => v.builder))
  const notHeardFrom = [...policy.builders.keys()].filter(b => !heard.has(b)).sort()

  const plural = (n: number, w: string): string => `${n} ${w}${n === 1 ? '' : 's'}`
  const finalFailures = failures.filter(f => f.final && failedSet.has(f.builder))
  const reasons = [...new Set(finalFailures.map(f => f.reason))]
  const dissentNote = (): string => {
    const others = supported.filter(r => r !== trusted)
    return others.length === 0 ? '' : `; ${plural(others.reduce((n, r) => n + r.builders.length, 0), 'dissenting builder')}: ${others.flatMap(r => r.builders).join(', ')}`
  }
  const resultsNote = supported.map(r => `${r.narSha256.slice(0, 12)} by ${r.supportingOrgs.join(', ')}`).join(' vs ')
  let summary: string
  if (status === 'trusted') {
    summary = `${trusted!.narSha256} by ${trusted!.supportingOrgs.length} of ${policy.orgs.length} organizations (threshold ${threshold})${dissentNote()}`
  } else if (status === 'pending') {
    summary = top === undefined
      ? `no counted result yet; ${plural(openOrgs.length, 'organization')} still open, ${threshold} needed`
      : `best result has ${best} of the ${threshold} organizations needed, ${plural(openOrgs.length, 'organization')} still open` +
        (supported.length > 1 ? `; builders disagree so far: ${resultsNote}` : '')
    if (conflictedOrgs.length > 0) summary += `; conflicted: ${conflictedOrgs.map(c => c.org).join(', ')}`
  } else if (status === 'disputed') {
    summary = policy.mode === 'unanimous' && supported.length >= 2
      ? `${supported.length} different results have support, so no result can be trusted unanimously: ${resultsNote}`
      : `no result can reach the threshold of ${threshold} any more: ${resultsNote}; ${plural(openOrgs.length, 'organization')} still open`
    if (conflictedOrgs.length > 0) summary += `; conflicted: ${conflictedOrgs.map(c => c.org).join(', ')}`
    if (equivocators.size > 0) summary += `; equivocating: ${[...equivocators.keys()].join(', ')}`
  } else {
    summary = `the build failed: ${plural(finalFailures.length, 'final signed failure')} from ${plural(failedBuilders.length, 'builder')}` +
      (reasons.length > 0 ? ` (${reasons.slice(0, 3).join('; ')}${reasons.length > 3 ? '; …' : ''})` : '') +
      `, no result has support and ${plural(openOrgs.length, 'organization')} still open cannot reach the threshold of ${threshold}`
    if (conflictedOrgs.length > 0) summary += `; conflicted: ${conflictedOrgs.map(c => c.org).join(', ')}`
    if (equivocators.size > 0) summary += `; equivocating: ${[...equivocators.keys()].join(', ')}`
  }

  return {
    repoId,
    commit,
    status,
    policyDigest: policy.digest,
    threshold,
    mode: policy.mode,
    organizations: policy.orgs.length,
    ...(trusted !== undefined ? { trusted } : {}),
    results,
    votes,
    supporters,
    dissenters,
    conflictedOrgs,
    equivocators: [...equivocators.values()],
    openOrgs,
    failedBuilders,
    recipeMismatches,
    failures,
    refObservations,
    ignored,
    notHeardFrom,
    envelopeIds: all.map(v => v.id),
    summary
  }
}

/**
 * "Seen on a ref" for deploy gates (DESIGN.md "The attestation"): the organizations whose counted
 * builders signed an observation of `ref` with this decision's commit as tip or among the commits
 * the move introduced, at any time. `reachable`: organizations still open could make up the rest
 * (the answer is then pending, not failed). An equivocator's observations do not count.
 */
export function refObservers (decision: Decision, ref: string): { orgs: string[], reached: boolean, reachable: boolean } {
  const equivocators = new Set(decision.equivocators.map(e => e.builder))
  const orgs = [...new Set(decision.refObservations.filter(o => o.ref === ref && o.seen && !equivocators.has(o.builder)).map(o => o.org))].sort()
  const reached = orgs.length >= decision.threshold
  const open = decision.openOrgs.filter(o => !orgs.includes(o)).length
  return { orgs, reached, reachable: reached || orgs.length + open >= decision.threshold }
}
