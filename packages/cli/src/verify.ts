import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { isIntotoJsonl, readIntotoJsonl, type BundleFormat } from './bundle-format.js'
import { decideQuorum, refObservers, OCI_MANIFEST_MEDIA_TYPE, QuorateError, isCommitSha, isRepoId, isSha256Hex, parseJsonStrict, type Decision, type FileListEntry, type Policy } from '@quorate/core'
import { nodeClient } from './node-client.js'
import { downloadBlob } from './blob-download.js'

export interface NodeAnswer { url: string, ok: boolean, envelopes: number, error?: string }

/** Envelopes gathered for one commit, from nodes or a bundle: all untrusted. */
export interface Evidence {
  envelopes: object[]
  proofs: Array<[object, object]>
  nodes: NodeAnswer[]
  source: 'nodes' | 'bundle'
  /** The policy digest the bundle says it was made under (bundles only). */
  policyDigest?: string
  /** `intoto-jsonl`: envelopes only, no policy digest to compare (bundles only). */
  format?: BundleFormat
}

export interface VerifyChecks {
  expectDigest?: string
  /** Require a quorum of organizations to have observed this ref at the commit. */
  ref?: string
  /** A local file that must appear in the trusted result's file list. */
  artifact?: { path: string, sha256: string }
  /** The trusted result must carry an OCI image subject (`--image`). */
  image?: boolean
  /** The pinned policy digest (`--policy-digest`): a bundle made under another policy is then refused. */
  policyDigest?: string
}

export type VerifyStatus = 'trusted' | 'pending' | 'disputed' | 'failed' | 'mismatch' | 'error'

export interface VerifyReport {
  /** 0 trusted (and every check passed), 1 disputed, failed or a check failed, 3 pending, 2 nothing could be checked. */
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
  /** Things the caller should know that do not change the answer (e.g. a bundle made under another policy). */
  warnings: string[]
  decision?: Decision
}

export function checkVerifyArgs (repoId: string, commit: string, policy: Policy, expectDigest?: string): void {
  if (!isRepoId(repoId)) throw new QuorateError('USAGE', `--repo: "${repoId}" is not a repository id`)
  if (!isCommitSha(commit)) throw new QuorateError('USAGE', `--commit: give the full lowercase hex commit id (git rev-parse HEAD), not "${commit}"`)
  if (expectDigest !== undefined && !isSha256Hex(expectDigest)) throw new QuorateError('USAGE', '--digest: give the 64-hex narSha256 (quorate digest PATH prints it)')
  if (!policy.repositories.has(repoId)) throw new QuorateError('USAGE', `--repo: "${repoId}" is not in the policy`)
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
      const body = await nodeClient(url).get('commit', { repo: repoId, commit }, { timeoutMs })
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
  let text: string | undefined
  try {
    text = readFileSync(file, 'utf8')
    if (!isIntotoJsonl(text)) raw = parseJsonStrict(text, file)
  } catch (err) {
    throw new QuorateError('CONFIG_INVALID', `${file}: cannot read the bundle (${(err as Error).message}); export one with "quorate bundle"`)
  }
  if (isIntotoJsonl(text!)) return { ...readIntotoJsonl(text!, file, repoId, commit), proofs: [], nodes: [], source: 'bundle', format: 'intoto-jsonl' }
  const b = raw as Partial<Bundle>
  if (b === null || typeof b !== 'object' || b.type !== BUNDLE_TYPE || !isRepoId(b.repoId) || !isCommitSha(b.commit)) {
    throw new QuorateError('CONFIG_INVALID', `${file}: not a Quorate bundle (type ${BUNDLE_TYPE} with repoId and commit); export one with "quorate bundle"`)
  }
  if (repoId !== undefined && repoId !== b.repoId) throw new QuorateError('USAGE', `--repo ${repoId} does not match the bundle's repository ${b.repoId}`)
  if (commit !== undefined && commit !== b.commit) throw new QuorateError('USAGE', `--commit ${commit} does not match the bundle's commit ${b.commit}`)
  return {
    envelopes: objects(b.envelopes), proofs: pairs(b.equivocationProofs), nodes: [], source: 'bundle', repoId: b.repoId, commit: b.commit,
    ...(typeof b.policyDigest === 'string' ? { policyDigest: b.policyDigest } : {})
  }
}

export function sha256File (path: string): string {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex')
  } catch (err) {
    throw new QuorateError('USAGE', `--artifact: cannot read ${path} (${(err as { code?: string }).code ?? (err as Error).message})`)
  }
}

/**
 * Fetches a file list by digest from the first node that has it, checking the digest the
 * supporters signed (verify, audit, rebuild and fetch all read file lists through this). The list
 * is streamed to a temporary file, checked there, then read entry by entry (a list of 500,000
 * files is never one string in memory); `keep` keeps only the entries a caller needs, and more
 * than `maxEntries` entries make the list invalid. Says why not: no node served it (`rejected`:
 * each node's refusal) or it is not a canonical file list (`invalid`).
 */
export async function downloadFileList (nodes: string[], sha256: string, opts: { timeoutMs?: number, maxBytes?: number, token?: string, keep?: (e: FileListEntry) => boolean, maxEntries?: number } = {}): Promise<{ files: FileListEntry[] } | { rejected: Array<{ url: string, reason: string }> } | { invalid: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-file-list-'))
  try {
    const path = join(dir, sha256)
    const { keep, maxEntries, ...download } = opts
    const got = await downloadBlob(nodes, sha256, path, download)
    if (!got.ok) return { rejected: got.rejected }
    const what = `file list ${sha256}`
    const files: FileListEntry[] = []
    try {
      const { readFileListEntries } = await import('@quorate/builder')
      let n = 0
      for await (const e of readFileListEntries(path, what)) {
        if (maxEntries !== undefined && ++n > maxEntries) throw new QuorateError('OUTPUT_INVALID', `${what}: more than ${maxEntries} entries; the supporters signed a file list this command will not write`)
        if (keep === undefined || keep(e as unknown as FileListEntry)) files.push(e as unknown as FileListEntry)
      }
    } catch (err) {
      return { invalid: (err as Error).message }
    }
    return { files }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** downloadFileList's entries, or undefined when no node serves the list or it is not a canonical file list. */
export async function fetchFileList (nodes: string[], sha256: string, timeoutMs?: number, opts: { keep?: (e: FileListEntry) => boolean, maxBytes?: number } = {}): Promise<{ files: FileListEntry[] } | undefined> {
  const got = await downloadFileList(nodes, sha256, { ...opts, ...(timeoutMs !== undefined ? { timeoutMs } : {}) })
  return 'files' in got ? got : undefined
}

/**
 * Decides from the gathered evidence against the caller's policy, then applies the checks.
 * `fileList` is the trusted result's file list when an artifact check was asked for; `decided` is
 * the decision over these same envelopes when the caller already made it (not made again).
 */
export function evaluate (policy: Policy, repoId: string, commit: string, evidence: Evidence, checks: VerifyChecks, fileList?: { files: FileListEntry[] } | null, decided?: Decision): VerifyReport {
  const short = `${repoId}@${commit.slice(0, 12)}`
  const warnings: string[] = []
  const head = { repoId, commit, policyDigest: policy.digest, nodes: evidence.nodes, images: [] as Array<{ name: string, sha256: string }>, warnings }
  if (evidence.source === 'nodes' && !evidence.nodes.some(n => n.ok)) {
    return { ...head, exitCode: 2, status: 'error', narSha256: null, message: `no node answered (${evidence.nodes.map(n => `${n.url}: ${n.error ?? ''}`).join('; ')}); check the --node URLs` }
  }
  if (evidence.source === 'bundle' && evidence.format !== 'intoto-jsonl' && evidence.policyDigest !== policy.digest) {
    const said = evidence.policyDigest ?? '(none)'
    if (checks.policyDigest !== undefined) {
      return { ...head, exitCode: 2, status: 'error', narSha256: null, message: `${short}: the bundle was made under policy ${said}, not the pinned --policy-digest ${checks.policyDigest}; export it from a node running the agreed policy` }
    }
    warnings.push(`the bundle was made under policy ${said}, not the given policy ${policy.digest}: it is checked against the given policy`)
  }
  const decision = decided ?? decideQuorum({ policy, repoId, commit, envelopes: evidence.envelopes, equivocationProofs: evidence.proofs })
  const narSha256 = decision.trusted?.narSha256 ?? null
  const report: VerifyReport = { ...head, decision, narSha256, exitCode: 3, status: 'pending', message: '' }
  if (decision.status === 'disputed') return { ...report, exitCode: 1, status: 'disputed', message: `${short} is disputed: ${decision.summary}` }
  if (decision.status === 'failed') return { ...report, exitCode: 1, status: 'failed', message: `${short} failed to build: ${decision.summary}` }
  if (decision.status === 'pending') return { ...report, exitCode: 3, status: 'pending', message: `${short} is pending: ${decision.summary}` }
  const trusted = decision.trusted!
  report.images = trusted.subjects.filter(s => (s as { mediaType?: string }).mediaType === OCI_MANIFEST_MEDIA_TYPE && typeof s.digest.sha256 === 'string').map(s => ({ name: s.name, sha256: s.digest.sha256 }))
  const fail = (message: string): VerifyReport => ({ ...report, exitCode: 1, status: 'mismatch', message: `${short}: ${message}` })
  if (checks.expectDigest !== undefined && checks.expectDigest !== narSha256) return fail(`the quorum trusts ${narSha256}, not the --digest ${checks.expectDigest}`)
  if (checks.ref !== undefined) {
    const { orgs, reached, reachable } = refObservers(decision, checks.ref)
    report.refObservedBy = orgs
    const seen = `only ${orgs.length} of the ${decision.threshold} organizations needed signed that ${checks.ref} brought this commit${orgs.length > 0 ? ` (${orgs.join(', ')})` : ''}`
    if (!reached && reachable) return { ...report, exitCode: 3, status: 'pending', message: `${short} is trusted, but ${seen} so far; ${decision.openOrgs.length} organizations are still open` }
    if (!reached) return fail(`trusted, but ${seen}`)
  }
  if (checks.artifact !== undefined) {
    if (fileList == null) return { ...report, exitCode: 2, status: 'error', message: `${short}: no node served the trusted file list ${trusted.fileListSha256}; ask a node that built it` }
    const entry = fileList.files.find(f => f.type === 'file' && f.sha256 === checks.artifact!.sha256)
    report.artifact = { ...checks.artifact, found: entry !== undefined, ...(entry !== undefined ? { entry } : {}) }
    if (entry === undefined) return fail(`${checks.artifact.path} (sha256 ${checks.artifact.sha256}) is not in the trusted build output`)
  }
  if (checks.image === true && report.images.length === 0) return fail('trusted, but the trusted result has no OCI image subject (is the recipe\'s outputKind "oci"?)')
  const orgs = trusted.supportingOrgs
  const dissenting = decision.dissenters.map(d => d.builder).filter((b, i, all) => all.indexOf(b) === i)
  const extra = [
    checks.ref !== undefined ? `seen on ${checks.ref} by ${report.refObservedBy!.join(', ')}` : '',
    report.artifact !== undefined ? `${checks.artifact!.path} is ${String((report.artifact.entry as { path?: string }).path)} of the output` : '',
    dissenting.length > 0 ? `${dissenting.length} dissenting builder${dissenting.length === 1 ? '' : 's'}: ${dissenting.join(', ')}` : ''
  ].filter(x => x !== '').join('; ')
  return { ...report, exitCode: 0, status: 'trusted', message: `${short} is trusted: narSha256 ${narSha256}, attested by ${orgs.length} of ${decision.organizations} organizations (${orgs.join(', ')}), threshold ${decision.threshold}${extra === '' ? '' : `; ${extra}`}` }
}

/** The `--json` document of `quorate verify`: the only thing verify writes to stdout with --json. */
export function verifyReportJson (report: VerifyReport): Record<string, unknown> {
  const d = report.decision
  return {
    schema: 'https://quorate.dev/verify-report/v1',
    status: report.status,
    exitCode: report.exitCode,
    repoId: report.repoId,
    commit: report.commit,
    narSha256: report.narSha256,
    policyDigest: report.policyDigest,
    decisionStatus: d?.status ?? null,
    threshold: d?.threshold ?? null,
    supportingOrgs: d?.trusted?.supportingOrgs ?? [],
    supporters: d?.supporters.map(s => ({ builder: s.builder, org: s.org, keyid: s.keyid, envelopeId: s.envelopeId })) ?? [],
    dissenters: d?.dissenters.map(s => ({ builder: s.builder, org: s.org, narSha256: s.narSha256 })) ?? [],
    results: d?.results.map(r => ({ narSha256: r.narSha256, supportingOrgs: r.supportingOrgs, builders: r.builders })) ?? [],
    openOrgs: d?.openOrgs ?? [],
    conflictedOrgs: d?.conflictedOrgs.map(c => c.org) ?? [],
    equivocators: d?.equivocators.map(e => ({ builder: e.builder, kind: e.kind, envelopeIds: e.envelopeIds })) ?? [],
    failures: d?.failures.map(f => ({ builder: f.builder, org: f.org, reason: f.reason, attempt: f.attempt, final: f.final })) ?? [],
    refObservedBy: report.refObservedBy ?? null,
    artifact: report.artifact ?? null,
    images: report.images,
    warnings: report.warnings,
    ignored: d?.ignored ?? [],
    envelopeIds: d?.envelopeIds ?? [],
    nodes: report.nodes,
    message: report.message
  }
}

/**
 * `verify --wait`: asks again while the answer is pending and stops at the first final answer
 * (or the deadline). `onProgress` hears each new pending message, so a long wait is not silent.
 */
export async function verifyUntilFinal (req: VerifyRequest, opts: { wait: boolean, timeoutMs: number, intervalMs?: number, progressEveryMs?: number, onProgress?: (message: string) => void }): Promise<VerifyReport> {
  const started = Date.now()
  const deadline = started + opts.timeoutMs
  let said = ''
  let saidAt = 0
  for (;;) {
    const report = await verifyCommit(req)
    if (!opts.wait || report.exitCode !== 3) return report
    if (Date.now() >= deadline) return { ...report, message: `${report.message} (gave up waiting after ${Math.round(opts.timeoutMs / 1000)} s)` }
    // Say what it waits for when that changes, and every ~10 s anyway: status, who is in, who is missing.
    if (report.message !== said || Date.now() - saidAt >= (opts.progressEveryMs ?? 10_000)) {
      said = report.message
      saidAt = Date.now()
      const d = report.decision
      const inOrgs = d === undefined ? [] : [...new Set([...d.votes.map(v => v.org), ...d.failures.map(f => f.org)])].sort()
      const missing = d === undefined ? '' : `; organizations in: ${inOrgs.length > 0 ? inOrgs.join(', ') : 'none'}; still open: ${d.openOrgs.length > 0 ? d.openOrgs.join(', ') : 'none'}`
      opts.onProgress?.(`${report.message} (${Math.round((Date.now() - started) / 1000)} s${missing})`)
    }
    await new Promise(resolve => setTimeout(resolve, Math.min(opts.intervalMs ?? 2000, Math.max(0, deadline - Date.now()))))
  }
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
  let fileList: { files: FileListEntry[] } | null = null
  let decision: Decision | undefined
  if (req.artifact !== undefined) {
    // The file list of the trusted result is needed before evaluating: decide once, here.
    decision = decideQuorum({ policy: req.policy, repoId: req.repoId, commit: req.commit, envelopes: evidence.envelopes, equivocationProofs: evidence.proofs })
    // Only the entries with the artifact's digest are kept: the rest of a huge list is read past.
    const wanted = req.artifact.sha256
    if (decision.trusted !== undefined) fileList = (await fetchFileList(req.nodes, decision.trusted.fileListSha256, 10_000, { keep: e => e.sha256 === wanted })) ?? null
  }
  return evaluate(req.policy, req.repoId, req.commit, evidence, req, fileList, decision)
}
