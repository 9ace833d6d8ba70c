import { readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { decideQuorum, refObservers, OCI_MANIFEST_MEDIA_TYPE, QuorateError, isCommitSha, isRepoId, isSha256Hex, parseJsonStrict, type Decision, type Policy } from '@quorate/core'

export interface NodeAnswer { url: string, ok: boolean, envelopes: number, error?: string }

/** Envelopes gathered for one commit, from nodes or a bundle: all untrusted. */
export interface Evidence {
  envelopes: object[]
  proofs: Array<[object, object]>
  nodes: NodeAnswer[]
  source: 'nodes' | 'bundle'
}

export interface VerifyChecks {
  expectDigest?: string
  /** Require a quorum of organizations to have observed this ref at the commit. */
  ref?: string
  /** A local file that must appear in the trusted result's file list. */
  artifact?: { path: string, sha256: string }
}

export type VerifyStatus = 'trusted' | 'disputed' | 'pending' | 'mismatch' | 'error'

export interface VerifyReport {
  /** 0 trusted (and every check passed), 1 disputed or a check failed, 3 pending, 2 nothing could be checked. */
  exitCode: 0 | 1 | 2 | 3
  status: VerifyStatus
  message: string
  repoId: string
  commit: string
  narSha256: string | null
  policyDigest: string
  nodes: NodeAnswer[]
  refObservedBy?: string[]
  artifact?: { path: string, sha256: string, found: boolean, entry?: unknown }
  images: Array<{ name: string, sha256: string }>
  decision?: Decision
}

export function checkVerifyArgs (repoId: string, commit: string, policy: Policy, expectDigest?: string): void {
  if (!isRepoId(repoId)) throw new QuorateError('USAGE', `--repo: "${repoId}" is not a repository id`)
  if (!isCommitSha(commit)) throw new QuorateError('USAGE', `--commit: give the full lowercase hex commit id (git rev-parse HEAD), not "${commit}"`)
  if (expectDigest !== undefined && !isSha256Hex(expectDigest)) throw new QuorateError('USAGE', '--digest: give the 64-hex narSha256 (quorate digest PATH prints it)')
  if (!policy.repositories.has(repoId)) throw new QuorateError('USAGE', `--repo: "${repoId}" is not in the policy`)
}

const base = (url: string): string => url.replace(/\/+$/, '')

async function fetchJson (url: string, timeoutMs: number): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
  if (!res.ok) {
    let detail = ''
    try { detail = ((await res.json()) as { error?: string }).error ?? '' } catch {}
    throw new Error(`HTTP ${res.status}${detail === '' ? '' : `: ${detail}`}`)
  }
  return await res.json()
}

function objects (v: unknown): object[] {
  return Array.isArray(v) ? v.filter((e): e is object => typeof e === 'object' && e !== null) : []
}

function pairs (v: unknown): Array<[object, object]> {
  return Array.isArray(v) ? v.filter((p): p is [object, object] => Array.isArray(p) && p.length === 2 && p.every(x => typeof x === 'object' && x !== null)) : []
}

/** Gathers every node's envelopes for a commit. Nodes' own verdicts are never read. */
export async function gatherFromNodes (nodes: string[], repoId: string, commit: string, timeoutMs = 10_000): Promise<Evidence> {
  if (nodes.length === 0) throw new QuorateError('USAGE', 'give at least one --node URL')
  const envelopes: object[] = []
  const proofs: Array<[object, object]> = []
  const answers = await Promise.all(nodes.map(async (url): Promise<NodeAnswer> => {
    try {
      const body = await fetchJson(`${base(url)}/v1/repos/${encodeURIComponent(repoId)}/commits/${commit}`, timeoutMs) as { envelopes?: unknown, equivocationProofs?: unknown }
      const got = objects(body.envelopes)
      envelopes.push(...got)
      proofs.push(...pairs(body.equivocationProofs))
      return { url, ok: true, envelopes: got.length }
    } catch (err) {
      return { url, ok: false, envelopes: 0, error: (err as Error).message }
    }
  }))
  return { envelopes, proofs, nodes: answers, source: 'nodes' }
}

export const BUNDLE_TYPE = 'https://quorate.dev/bundle/v1'

export interface Bundle {
  type: typeof BUNDLE_TYPE
  repoId: string
  commit: string
  policyDigest: string
  createdAt: string
  /** Every envelope known for the commit: builds, failures, ref observations. */
  envelopes: object[]
  equivocationProofs: Array<[object, object]>
  /** The exporting node's decision: informative only, a verifier decides again. */
  decision?: unknown
}

export function readBundle (file: string, repoId: string | undefined, commit: string | undefined): Evidence & { repoId: string, commit: string } {
  let raw: unknown
  try {
    raw = parseJsonStrict(readFileSync(file, 'utf8'), file)
  } catch (err) {
    throw new QuorateError('CONFIG_INVALID', `${file}: cannot read the bundle (${(err as Error).message}); export one with "quorate bundle"`)
  }
  const b = raw as Partial<Bundle>
  if (b === null || typeof b !== 'object' || b.type !== BUNDLE_TYPE || !isRepoId(b.repoId) || !isCommitSha(b.commit)) {
    throw new QuorateError('CONFIG_INVALID', `${file}: not a Quorate bundle (type ${BUNDLE_TYPE} with repoId and commit); export one with "quorate bundle"`)
  }
  if (repoId !== undefined && repoId !== b.repoId) throw new QuorateError('USAGE', `--repo ${repoId} does not match the bundle's repository ${b.repoId}`)
  if (commit !== undefined && commit !== b.commit) throw new QuorateError('USAGE', `--commit ${commit} does not match the bundle's commit ${b.commit}`)
  return { envelopes: objects(b.envelopes), proofs: pairs(b.equivocationProofs), nodes: [], source: 'bundle', repoId: b.repoId, commit: b.commit }
}

export function sha256File (path: string): string {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex')
  } catch (err) {
    throw new QuorateError('USAGE', `--artifact: cannot read ${path} (${(err as { code?: string }).code ?? (err as Error).message})`)
  }
}

/** Fetches a file list by digest from any node that has it, checking the digest the supporters signed. */
export async function fetchFileList (nodes: string[], sha256: string): Promise<{ files: Array<Record<string, unknown>> } | undefined> {
  for (const url of nodes) {
    try {
      const res = await fetch(`${base(url)}/v1/blobs/${sha256}`, { signal: AbortSignal.timeout(10_000) })
      if (!res.ok) continue
      const bytes = Buffer.from(await res.arrayBuffer())
      if (createHash('sha256').update(bytes).digest('hex') !== sha256) continue
      return JSON.parse(bytes.toString('utf8')) as { files: Array<Record<string, unknown>> }
    } catch {}
  }
  return undefined
}


/**
 * Decides from the gathered evidence against the caller's policy, then applies the checks.
 * `fileList` is the trusted result's file list when an artifact check was asked for.
 */
export function evaluate (policy: Policy, repoId: string, commit: string, evidence: Evidence, checks: VerifyChecks, fileList?: { files: Array<Record<string, unknown>> } | null): VerifyReport {
  const head = { repoId, commit, policyDigest: policy.digest, nodes: evidence.nodes, images: [] as Array<{ name: string, sha256: string }> }
  if (evidence.source === 'nodes' && !evidence.nodes.some(n => n.ok)) {
    return { ...head, exitCode: 2, status: 'error', narSha256: null, message: `no node answered (${evidence.nodes.map(n => `${n.url}: ${n.error ?? ''}`).join('; ')}); check the --node URLs` }
  }
  const decision = decideQuorum({ policy, repoId, commit, envelopes: evidence.envelopes, equivocationProofs: evidence.proofs })
  const narSha256 = decision.trusted?.narSha256 ?? null
  const short = `${repoId}@${commit.slice(0, 12)}`
  const report: VerifyReport = { ...head, decision, narSha256, exitCode: 3, status: 'pending', message: '' }
  if (decision.status === 'disputed') return { ...report, exitCode: 1, status: 'disputed', message: `${short} is disputed: ${decision.summary}` }
  if (decision.status === 'pending') return { ...report, exitCode: 3, status: 'pending', message: `${short} is pending: ${decision.summary}` }
  const trusted = decision.trusted!
  report.images = trusted.subjects.filter(s => (s as { mediaType?: string }).mediaType === OCI_MANIFEST_MEDIA_TYPE && typeof s.digest.sha256 === 'string').map(s => ({ name: s.name, sha256: s.digest.sha256 }))
  const fail = (message: string): VerifyReport => ({ ...report, exitCode: 1, status: 'mismatch', message: `${short}: ${message}` })
  if (checks.expectDigest !== undefined && checks.expectDigest !== narSha256) return fail(`the quorum trusts ${narSha256}, not the --digest ${checks.expectDigest}`)
  if (checks.ref !== undefined) {
    const { orgs, reached } = refObservers(decision, checks.ref)
    report.refObservedBy = orgs
    if (!reached) return fail(`trusted, but only ${orgs.length} of the ${decision.threshold} organizations needed signed that they saw ${checks.ref} at this commit${orgs.length > 0 ? ` (${orgs.join(', ')})` : ''}`)
  }
  if (checks.artifact !== undefined) {
    if (fileList == null) return { ...report, exitCode: 2, status: 'error', message: `${short}: no node served the trusted file list ${trusted.fileListSha256}; ask a node that built it` }
    const entry = fileList.files.find(f => f.type === 'file' && f.sha256 === checks.artifact!.sha256)
    report.artifact = { ...checks.artifact, found: entry !== undefined, ...(entry !== undefined ? { entry } : {}) }
    if (entry === undefined) return fail(`${checks.artifact.path} (sha256 ${checks.artifact.sha256}) is not in the trusted build output`)
  }
  const orgs = trusted.supportingOrgs
  const extra = [
    checks.ref !== undefined ? `seen on ${checks.ref} by ${report.refObservedBy!.join(', ')}` : '',
    report.artifact !== undefined ? `${checks.artifact!.path} is ${String((report.artifact.entry as { path?: string }).path)} of the output` : ''
  ].filter(x => x !== '').join('; ')
  return { ...report, exitCode: 0, status: 'trusted', message: `${short} is trusted: narSha256 ${narSha256}, attested by ${orgs.length} of ${decision.organizations} organizations (${orgs.join(', ')}), threshold ${decision.threshold}${extra === '' ? '' : `; ${extra}`}` }
}

export interface VerifyRequest extends VerifyChecks {
  nodes: string[]
  policy: Policy
  repoId: string
  commit: string
  timeoutMs?: number
}

/** The deploy gate over HTTP: gather from every node, decide locally, check. */
export async function verifyCommit (req: VerifyRequest): Promise<VerifyReport> {
  checkVerifyArgs(req.repoId, req.commit, req.policy, req.expectDigest)
  const evidence = await gatherFromNodes(req.nodes, req.repoId, req.commit, req.timeoutMs)
  let fileList: { files: Array<Record<string, unknown>> } | null = null
  if (req.artifact !== undefined) {
    const d = decideQuorum({ policy: req.policy, repoId: req.repoId, commit: req.commit, envelopes: evidence.envelopes, equivocationProofs: evidence.proofs })
    if (d.trusted !== undefined) fileList = (await fetchFileList(req.nodes, d.trusted.fileListSha256)) ?? null
  }
  return evaluate(req.policy, req.repoId, req.commit, evidence, req, fileList)
}
