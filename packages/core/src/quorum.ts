import { canonicalize } from './canonical-json.js'
import type { Envelope } from './dsse.js'
import { sha256Hex } from './hash.js'
import type { Policy, QuorumMode } from './policy.js'
import type { BuildAttestation, Subject } from './statement.js'
import { checkEnvelope, type VerifiedAttestation } from './verify.js'

export type DecisionStatus = 'trusted' | 'disputed' | 'pending'

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
  results: ResultSummary[]
  supporters: BuilderVote[]
  dissenters: BuilderVote[]
  conflictedOrgs: Array<{ org: string, resultKeys: string[] }>
  equivocators: Equivocation[]
  recipeMismatches: Array<{ builder: string, org: string, envelopeId: string, recipeDigest: string }>
  failures: Array<{ builder: string, org: string, envelopeId: string, reason: string, exitStatus: number | null, timedOut: boolean }>
  refObservations: Array<{ builder: string, org: string, envelopeId: string, ref: string }>
  ignored: Array<{ envelopeId?: string, keyid?: string, reason: string }>
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
      ignored.push({ envelopeId: c.id, keyid: c.keyid, reason: c.reason })
      continue
    }
    if (c.verified.attestation.commit !== commit) {
      ignored.push({ envelopeId: c.verified.id, keyid: c.verified.keyid, reason: `for another commit (${c.verified.attestation.commit})` })
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
  const failures: Decision['failures'] = []
  const refObservations: Decision['refObservations'] = []
  const votes: BuilderVote[] = []
  const resultInfo = new Map<string, BuildAttestation>()
  for (const v of all) {
    const a = v.attestation
    if (a.kind === 'ref') { refObservations.push({ builder: v.builder, org: v.org, envelopeId: v.id, ref: a.ref }); continue }
    if (a.kind === 'failure') {
      failures.push({ builder: v.builder, org: v.org, envelopeId: v.id, reason: a.reason, exitStatus: a.exitStatus, timedOut: a.timedOut })
      continue
    }
    if (!recipeFromRepo && repo?.recipeDigest !== undefined && a.recipeDigest !== repo.recipeDigest) {
      recipeMismatches.push({ builder: v.builder, org: v.org, envelopeId: v.id, recipeDigest: a.recipeDigest })
      continue
    }
    if (equivocators.has(v.builder)) continue
    const resultKey = resultKeyOf(a, recipeFromRepo)
    if (!resultInfo.has(resultKey)) resultInfo.set(resultKey, a)
    if (!votes.some(x => x.builder === v.builder && x.resultKey === resultKey)) {
      votes.push({ builder: v.builder, org: v.org, keyid: v.keyid, envelopeId: v.id, resultKey, narSha256: a.narSha256 })
    }
  }

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

  const supported = results.filter(r => r.supportingOrgs.length > 0)
  const top = supported[0]
  let status: DecisionStatus = 'pending'
  let trusted: ResultSummary | undefined
  if (top !== undefined && top.supportingOrgs.length >= policy.threshold && (policy.mode === 'majority' || supported.length === 1)) {
    status = 'trusted'
    trusted = top
  } else if (supported.length >= 2) {
    status = 'disputed'
  }
  const supporters = trusted === undefined ? [] : votes.filter(v => v.resultKey === trusted.resultKey && trusted.supportingOrgs.includes(v.org))
  const dissenters = trusted === undefined ? votes : votes.filter(v => !supporters.includes(v))
  const heard = new Set(all.map(v => v.builder))
  const notHeardFrom = [...policy.builders.keys()].filter(b => !heard.has(b)).sort()

  const summary = status === 'trusted'
    ? `trusted: ${trusted!.narSha256} by ${trusted!.supportingOrgs.length} of ${policy.orgs.length} organizations (threshold ${policy.threshold})`
    : status === 'disputed'
      ? `disputed: ${supported.length} different results have support and none reaches the threshold of ${policy.threshold}${policy.mode === 'unanimous' ? ' unanimously' : ''}`
      : `pending: ${top === undefined ? 'no counted result yet' : `best result has ${top.supportingOrgs.length} of the ${policy.threshold} organizations needed`}`

  return {
    repoId,
    commit,
    status,
    policyDigest: policy.digest,
    threshold: policy.threshold,
    mode: policy.mode,
    organizations: policy.orgs.length,
    ...(trusted !== undefined ? { trusted } : {}),
    results,
    supporters,
    dissenters,
    conflictedOrgs,
    equivocators: [...equivocators.values()],
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
 * Ref check for deploy gates: the organizations whose counted builders signed an observation of
 * `ref` at this decision's commit. An equivocator's observations do not count.
 */
export function refObservers (decision: Decision, ref: string): { orgs: string[], reached: boolean } {
  const equivocators = new Set(decision.equivocators.map(e => e.builder))
  const orgs = [...new Set(decision.refObservations.filter(o => o.ref === ref && !equivocators.has(o.builder)).map(o => o.org))].sort()
  return { orgs, reached: orgs.length >= decision.threshold }
}
