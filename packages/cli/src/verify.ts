import { decideQuorum, QuorateError, isCommitSha, isRepoId, isSha256Hex, type Decision, type Policy } from '@quorate/core'

export interface NodeAnswer { url: string, ok: boolean, envelopes: number, error?: string }

export interface VerifyRequest {
  nodes: string[]
  policy: Policy
  repoId: string
  commit: string
  expectDigest?: string
  timeoutMs?: number
}

export type VerifyStatus = 'trusted' | 'disputed' | 'pending' | 'mismatch'

export interface VerifyReport {
  /** 0 trusted (and matching), 1 disputed or mismatching, 3 pending, 2 nothing could be checked. */
  exitCode: 0 | 1 | 2 | 3
  status: VerifyStatus | 'error'
  message: string
  repoId: string
  commit: string
  narSha256: string | null
  policyDigest: string
  nodes: NodeAnswer[]
  decision?: Decision
}

/** Fetches one node's envelopes for a commit. The node's own verdict is ignored. */
async function fetchFromNode (url: string, repoId: string, commit: string, timeoutMs: number): Promise<{ envelopes: object[], proofs: Array<[object, object]> }> {
  const res = await fetch(`${url.replace(/\/+$/, '')}/v1/repos/${encodeURIComponent(repoId)}/commits/${commit}`, { signal: AbortSignal.timeout(timeoutMs) })
  if (!res.ok) {
    let detail = ''
    try { detail = ((await res.json()) as { error?: string }).error ?? '' } catch {}
    throw new Error(`HTTP ${res.status}${detail === '' ? '' : `: ${detail}`}`)
  }
  const body = await res.json() as { envelopes?: unknown, equivocationProofs?: unknown }
  const envelopes = Array.isArray(body.envelopes) ? body.envelopes.filter((e): e is object => typeof e === 'object' && e !== null) : []
  const proofs = Array.isArray(body.equivocationProofs)
    ? body.equivocationProofs.filter((p): p is [object, object] => Array.isArray(p) && p.length === 2 && p.every(x => typeof x === 'object' && x !== null))
    : []
  return { envelopes, proofs }
}

/**
 * The deploy gate: gathers envelopes from every node given, and decides itself against
 * the caller's policy. A lying node can add nothing that verifies; a lagging one only
 * contributes less.
 */
export async function verifyCommit (req: VerifyRequest): Promise<VerifyReport> {
  if (!isRepoId(req.repoId)) throw new QuorateError('USAGE', `--repo: "${req.repoId}" is not a repository id`)
  if (!isCommitSha(req.commit)) throw new QuorateError('USAGE', `--commit: give the full lowercase hex commit id (git rev-parse HEAD), not "${req.commit}"`)
  if (req.expectDigest !== undefined && !isSha256Hex(req.expectDigest)) throw new QuorateError('USAGE', '--digest: give the 64-hex narSha256 (quorate digest PATH prints it)')
  if (req.nodes.length === 0) throw new QuorateError('USAGE', 'give at least one --node URL')
  if (!req.policy.repositories.has(req.repoId)) throw new QuorateError('USAGE', `--repo: "${req.repoId}" is not in the policy`)
  const envelopes: object[] = []
  const proofs: Array<[object, object]> = []
  const nodes: NodeAnswer[] = await Promise.all(req.nodes.map(async url => {
    try {
      const got = await fetchFromNode(url, req.repoId, req.commit, req.timeoutMs ?? 10_000)
      envelopes.push(...got.envelopes)
      proofs.push(...got.proofs)
      return { url, ok: true, envelopes: got.envelopes.length }
    } catch (err) {
      return { url, ok: false, envelopes: 0, error: (err as Error).message }
    }
  }))
  const base = { repoId: req.repoId, commit: req.commit, policyDigest: req.policy.digest, nodes }
  if (!nodes.some(n => n.ok)) {
    return { ...base, exitCode: 2, status: 'error', narSha256: null, message: `no node answered (${nodes.map(n => `${n.url}: ${n.error ?? ''}`).join('; ')}); check the --node URLs` }
  }
  const decision = decideQuorum({ policy: req.policy, repoId: req.repoId, commit: req.commit, envelopes, equivocationProofs: proofs })
  const narSha256 = decision.trusted?.narSha256 ?? null
  const short = `${req.repoId}@${req.commit.slice(0, 12)}`
  if (decision.status === 'trusted') {
    const orgs = decision.trusted!.supportingOrgs
    if (req.expectDigest !== undefined && req.expectDigest !== narSha256) {
      return { ...base, decision, narSha256, exitCode: 1, status: 'mismatch', message: `${short}: the quorum trusts ${narSha256}, not the --digest ${req.expectDigest}` }
    }
    return { ...base, decision, narSha256, exitCode: 0, status: 'trusted', message: `${short} is trusted: narSha256 ${narSha256}, attested by ${orgs.length} of ${decision.organizations} organizations (${orgs.join(', ')}), threshold ${decision.threshold}` }
  }
  if (decision.status === 'disputed') {
    return { ...base, decision, narSha256, exitCode: 1, status: 'disputed', message: `${short} is disputed: ${decision.summary}` }
  }
  return { ...base, decision, narSha256, exitCode: 3, status: 'pending', message: `${short} is pending: ${decision.summary}` }
}
