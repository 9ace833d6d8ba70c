import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, writeFileSync, symlinkSync, chmodSync, lstatSync, readdirSync, utimesSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { decideQuorum, diffFileLists, escapeForDisplay, escapeMarkdown, stringifyForDisplay, parseAttestation, parseEnvelope, QuorateError, type Decision, type FileListDiff, type Policy } from '@quorate/core'
import { fetchFileList, gatherFromNodes } from './verify.js'
import { nodeClient } from './node-client.js'
import { failureLogTails } from './build-logs.js'

/** One builder's build for the audited commit, as read from its signed envelope. */
export interface AuditBuild {
  builder: string
  org: string
  narSha256: string
  resultKey: string
  fileListSha256: string
  recipeDigest: string
  /** The builder id the signer wrote into its attestation (runDetails.builder.id): the signer's string. */
  builderId: string
  fingerprint: Record<string, unknown>
}

/**
 * What an equivocator signed for the audited commit. Its proof (possibly from another commit of
 * the repository) keeps all of it out of the count, but an auditor still sees each claim.
 */
export interface UncountedAttestation {
  builder: string
  org: string
  envelopeId: string
  kind: 'build' | 'failure' | 'ref'
  builderId: string
  /** build: the result it signed; failure: the reason it gave; ref: the ref it observed. */
  narSha256?: string
  reason?: string
  ref?: string
  why: 'equivocator'
}

export interface AuditFinding {
  repoId: string
  commit: string
  status: Decision['status']
  summary: string
  trustedNarSha256: string | null
  builds: AuditBuild[]
  /** File-level differences of each other result against the reference (trusted, else most supported) result. */
  differences: Array<{ narSha256: string, builders: string[], against: string, diff: FileListDiff | null, note?: string }>
  fingerprintDifferences: Array<{ field: string, values: Record<string, string> }>
  recipeMismatches: Decision['recipeMismatches']
  failures: Decision['failures']
  conflictedOrgs: string[]
  equivocations: Array<{ builder: string, org: string, kind: string, envelopeIds: [string, string], envelopes: [unknown, unknown] }>
  /** Attestations for this commit that the decision does not count because their signer equivocated. */
  uncounted: UncountedAttestation[]
  /** The end of each failing builder's log (fetched by its signed digest), when any builder failed. */
  failureLogs: Array<{ builder: string, logSha256: string, text: string }>
}

/** Content-addressed bytes from the first node that has them (checked against their sha256). */
async function fetchVerified (urls: string[], kind: 'blob' | 'file', sha256: string): Promise<Buffer | undefined> {
  for (const url of urls) {
    try {
      const body = await nodeClient(url).bytes(kind, sha256)
      if (body !== undefined) return Buffer.from(body)
    } catch {}
  }
  return undefined
}

function flatten (value: unknown, prefix: string, out: Record<string, string>): void {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix === '' ? k : `${prefix}.${k}`, out)
  } else {
    out[prefix] = typeof value === 'string' ? value : JSON.stringify(value)
  }
}

/** Audits one commit: decides locally from every node's envelopes, then explains each disagreement. */
export async function auditCommit (policy: Policy, nodes: string[], repoId: string, commit: string): Promise<AuditFinding> {
  const evidence = await gatherFromNodes(nodes, repoId, commit)
  if (!evidence.nodes.some(n => n.ok)) throw new QuorateError('HTTP_FAILED', `no node answered for ${repoId}@${commit}: ${evidence.nodes.map(n => `${n.url}: ${n.error ?? ''}`).join('; ')}`)
  return await auditEvidence(policy, nodes, repoId, commit, evidence)
}

/**
 * Audits one commit from envelopes already gathered (from nodes or a bundle). `nodes` (and the
 * policy's builder endpoints) are asked only for file lists, to explain differences.
 */
export async function auditEvidence (policy: Policy, nodes: string[], repoId: string, commit: string, evidence: { envelopes: readonly object[], proofs: ReadonlyArray<readonly [object, object]> }): Promise<AuditFinding> {
  const decision = decideQuorum({ policy, repoId, commit, envelopes: evidence.envelopes, equivocationProofs: evidence.proofs })
  const counted = new Set(decision.votes.map(v => v.envelopeId))
  const equivocatorKeys = new Set(decision.equivocators.map(e => e.keyid))
  const decided = new Set(decision.envelopeIds)
  const builds: AuditBuild[] = []
  const uncounted: UncountedAttestation[] = []
  for (const raw of evidence.envelopes) {
    try {
      const parsed = parseEnvelope(raw)
      const key = policy.keys.get(parsed.keyid)
      if (key === undefined) continue
      const a = parseAttestation(parsed.payloadBytes)
      // The decision verified it (its id is among those it rests on) but left it out: the signer equivocated.
      if (equivocatorKeys.has(parsed.keyid) && decided.has(parsed.id) && a.commit === commit) {
        if (uncounted.some(u => u.envelopeId === parsed.id)) continue
        uncounted.push({
          builder: key.builder, org: key.org, envelopeId: parsed.id, kind: a.kind, builderId: a.builderId, why: 'equivocator',
          ...(a.kind === 'build' ? { narSha256: a.narSha256 } : a.kind === 'failure' ? { reason: a.reason } : { ref: a.ref })
        })
        continue
      }
      if (!counted.has(parsed.id)) continue
      if (a.kind !== 'build' || builds.some(b => b.builder === key.builder && b.resultKey === a.resultDigest)) continue
      const vote = decision.votes.find(v => v.envelopeId === parsed.id)!
      builds.push({ builder: key.builder, org: key.org, narSha256: a.narSha256, resultKey: vote.resultKey, fileListSha256: a.fileListSha256, recipeDigest: a.recipeDigest, builderId: a.builderId, fingerprint: a.fingerprint })
    } catch {}
  }
  builds.sort((x, y) => x.builder < y.builder ? -1 : 1)
  uncounted.sort((x, y) => x.builder < y.builder ? -1 : x.builder > y.builder ? 1 : x.kind < y.kind ? -1 : x.kind > y.kind ? 1 : 0)
  const reference = decision.trusted ?? decision.results[0]
  const endpoints = [...nodes, ...[...policy.builders.values()].map(b => b.endpoint).filter((e): e is string => e !== undefined)]
  const differences: AuditFinding['differences'] = []
  if (reference !== undefined) {
    const refList = await fetchFileList(endpoints, reference.fileListSha256)
    for (const r of decision.results) {
      if (r.resultKey === reference.resultKey) continue
      const other = await fetchFileList(endpoints, r.fileListSha256)
      const note = refList === undefined || other === undefined ? 'a file list could not be fetched from any node or builder endpoint' : undefined
      differences.push({ narSha256: r.narSha256, builders: r.builders, against: reference.narSha256, diff: note === undefined ? diffFileLists(refList!, other!) : null, ...(note !== undefined ? { note } : {}) })
    }
  }
  const flat = builds.map(b => { const o: Record<string, string> = {}; flatten(b.fingerprint, '', o); return [b.builder, o] as const })
  const fields = new Set(flat.flatMap(([, o]) => Object.keys(o)))
  const fingerprintDifferences: AuditFinding['fingerprintDifferences'] = []
  for (const field of [...fields].sort()) {
    const values: Record<string, string> = {}
    for (const [builder, o] of flat) values[builder] = o[field] ?? '(absent)'
    if (new Set(Object.values(values)).size > 1) fingerprintDifferences.push({ field, values })
  }
  const failureLogs = decision.failures.length > 0 ? await failureLogTails(policy, nodes, repoId, commit, evidence, { token: process.env.QUORATE_READ_TOKEN, lines: 10, decision }) : []
  return {
    repoId,
    commit,
    failureLogs,
    status: decision.status,
    summary: decision.summary,
    trustedNarSha256: decision.trusted?.narSha256 ?? null,
    builds,
    differences,
    fingerprintDifferences,
    recipeMismatches: decision.recipeMismatches,
    failures: decision.failures,
    conflictedOrgs: decision.conflictedOrgs.map(c => c.org),
    equivocations: decision.equivocators.map(e => ({ builder: e.builder, org: e.org, kind: e.kind, envelopeIds: e.envelopeIds, envelopes: e.envelopes })),
    uncounted
  }
}

/**
 * One line per builder for its failed attempts (retries of one build key are not separate
 * findings): "attempts 1, 2, 3 (final)" and the latest reason.
 */
export function groupFailures (failures: ReadonlyArray<{ builder: string, reason: string, attempt?: number, final?: boolean, seq?: number }>): Array<{ builder: string, attempts: string, reason: string }> {
  const by = new Map<string, Array<{ reason: string, attempt?: number, final?: boolean, seq?: number }>>()
  for (const x of failures) by.set(x.builder, [...(by.get(x.builder) ?? []), x])
  return [...by].map(([builder, xs]) => {
    const sorted = [...xs].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0))
    const last = sorted[sorted.length - 1]
    // A final attempt signed again as not final is an administrator's rebuild request (it reopened the attempt).
    const reopened = (x: typeof sorted[number], i: number): boolean => i > 0 && sorted[i - 1].final === true && x.final !== true && (sorted[i - 1].attempt ?? 1) === (x.attempt ?? 1)
    const parts = sorted.map((x, i) => reopened(x, i) ? 'reopened by an administrator' : `${x.attempt ?? 1}${x.final === true && i < sorted.length - 1 ? ' (final)' : ''}`)
    const tries = sorted.filter((x, i) => !reopened(x, i)).length
    return { builder, attempts: `attempt${tries === 1 ? '' : 's'} ${parts.join(', ')}${last.final === true ? ' (final)' : ' (will retry)'}`, reason: last.reason }
  })
}

export function hasFindings (f: AuditFinding): boolean {
  return f.status !== 'trusted' || f.differences.length > 0 || f.recipeMismatches.length > 0 || f.failures.length > 0 || f.conflictedOrgs.length > 0 || f.equivocations.length > 0 || f.uncounted.length > 0
}

function uncountedClaim (u: UncountedAttestation, esc: (s: unknown) => string): string {
  if (u.kind === 'build') return `result ${u.narSha256 ?? ''}`
  if (u.kind === 'failure') return `a build failure (${esc(u.reason ?? '')})`
  return `an observation of ${esc(u.ref ?? '')}`
}

/** Escapes anything a signer wrote for a terminal: control and bidi characters become visible escapes. */
export function term (s: unknown): string {
  return escapeForDisplay(s)
}

/** Escapes for Markdown table cells and text: no HTML, no links, no table breaks, no control or bidi characters. */
export function md (s: unknown): string {
  return escapeMarkdown(s)
}

/** The JSON report: the same findings, with no raw control or bidi character (it parses to the same values). */
export function renderJson (findings: AuditFinding[], policyDigest: string): string {
  return stringifyForDisplay({ schema: 'https://quorate.dev/audit-report/v1', policyDigest, findings }, 2) + '\n'
}

const short = (h: string | null | undefined): string => h == null ? '-' : h.slice(0, 16)

export function renderText (findings: AuditFinding[]): string {
  const out: string[] = []
  if (findings.length === 0) return 'no disagreements, failures, recipe mismatches or equivocations found\n'
  for (const f of findings) {
    out.push(`${f.repoId}@${f.commit}  ${f.status.toUpperCase()}  ${term(f.summary)}`)
    out.push('  builder               org                   narSha256          agrees')
    for (const b of f.builds) out.push(`  ${term(b.builder).padEnd(21)} ${term(b.org).padEnd(21)} ${short(b.narSha256).padEnd(18)} ${f.trustedNarSha256 === null ? '?' : b.narSha256 === f.trustedNarSha256 ? 'yes' : 'NO'}`)
    for (const d of f.differences) {
      out.push(`  result ${short(d.narSha256)} (${d.builders.map(term).join(', ')}) differs from ${short(d.against)}:`)
      if (d.diff === null) { out.push(`    ${d.note ?? ''}`); continue }
      for (const a of d.diff.added) out.push(`    added    ${term(a.path)}  ${a.size ?? ''} ${short(a.sha256)}`)
      for (const r of d.diff.removed) out.push(`    removed  ${term(r.path)}  ${r.size ?? ''} ${short(r.sha256)}`)
      for (const c of d.diff.changed) out.push(`    changed  ${term(c.path)}  ${c.differs.join('+')}: ${c.before.size ?? ''} ${short(c.before.sha256)} -> ${c.after.size ?? ''} ${short(c.after.sha256)}`)
    }
    for (const x of f.fingerprintDifferences) out.push(`  environment differs: ${term(x.field)}: ${Object.entries(x.values).map(([b, v]) => `${term(b)}=${term(v)}`).join('; ')}`)
    const rootNote = buildRootNote(f.fingerprintDifferences)
    if (rootNote !== null) out.push(`  ${rootNote}`)
    for (const m of f.recipeMismatches) out.push(`  recipe mismatch: ${term(m.builder)} built recipe ${short(m.recipeDigest)}`)
    for (const g of groupFailures(f.failures)) out.push(`  failure: ${term(g.builder)}: ${g.attempts}: ${term(g.reason)}`)
    for (const l of f.failureLogs ?? []) out.push(`  ${escapeForDisplay(l.text, { keepLayout: true }).replace(/\n/g, '\n  ')}`)
    for (const o of f.conflictedOrgs) out.push(`  conflicted organization: ${term(o)} (its builders disagree)`)
    for (const e of f.equivocations) out.push(`  EQUIVOCATION: ${term(e.builder)} (${term(e.org)}) ${e.kind}: envelopes ${e.envelopeIds.join(' and ')}`)
    for (const u of f.uncounted) out.push(`  not counted (equivocator): ${term(u.builder)} (${term(u.org)}) signed ${uncountedClaim(u, term)} as ${term(u.builderId)}, envelope ${u.envelopeId}`)
    out.push('')
  }
  return out.join('\n')
}

export function renderMarkdown (findings: AuditFinding[]): string {
  const out: string[] = ['# Quorate audit', '']
  if (findings.length === 0) return out.concat('No disagreements, failures, recipe mismatches or equivocations found.', '').join('\n')
  for (const f of findings) {
    out.push(`## ${md(f.repoId)}@\`${f.commit}\`: ${f.status}`, '', md(f.summary), '', '| builder | organization | narSha256 | agrees with the quorum |', '|---|---|---|---|')
    for (const b of f.builds) out.push(`| ${md(b.builder)} | ${md(b.org)} | \`${b.narSha256}\` | ${f.trustedNarSha256 === null ? 'n/a' : b.narSha256 === f.trustedNarSha256 ? 'yes' : '**no**'} |`)
    for (const d of f.differences) {
      out.push('', `### Result \`${short(d.narSha256)}\` (${d.builders.map(md).join(', ')}) against \`${short(d.against)}\``, '')
      if (d.diff === null) { out.push(md(d.note ?? '')); continue }
      out.push('| change | path | before | after |', '|---|---|---|---|')
      for (const a of d.diff.added) out.push(`| added | ${md(a.path)} | | ${a.size ?? ''} \`${short(a.sha256)}\` |`)
      for (const r of d.diff.removed) out.push(`| removed | ${md(r.path)} | ${r.size ?? ''} \`${short(r.sha256)}\` | |`)
      for (const c of d.diff.changed) out.push(`| changed (${c.differs.join(', ')}) | ${md(c.path)} | ${c.before.size ?? ''} \`${short(c.before.sha256)}\` | ${c.after.size ?? ''} \`${short(c.after.sha256)}\` |`)
    }
    if (f.fingerprintDifferences.length > 0) {
      out.push('', '### Environment differences', '')
      for (const x of f.fingerprintDifferences) out.push(`- ${md(x.field)}: ${Object.entries(x.values).map(([b, v]) => `${md(b)} = ${md(v)}`).join('; ')}`)
      const rootNote = buildRootNote(f.fingerprintDifferences)
      if (rootNote !== null) out.push('', md(rootNote))
    }
    for (const g of groupFailures(f.failures)) out.push('', `- failure: ${md(g.builder)}: ${g.attempts}: ${md(g.reason)}`)
    for (const l of f.failureLogs ?? []) {
      const [head, ...tail] = l.text.split('\n')
      // An indented code block shows the log literally (no Markdown inside it is interpreted).
      out.push('', md(head), '', ...tail.map(line => `    ${escapeForDisplay(line.replace(/^ {4}/, ''))}`))
    }
    for (const m of f.recipeMismatches) out.push('', `- recipe mismatch: ${md(m.builder)} built recipe \`${m.recipeDigest}\``)
    for (const o of f.conflictedOrgs) out.push('', `- conflicted organization: ${md(o)}`)
    for (const e of f.equivocations) out.push('', `- **equivocation** by ${md(e.builder)} (${md(e.org)}), ${e.kind}: \`${e.envelopeIds[0]}\` and \`${e.envelopeIds[1]}\``)
    if (f.uncounted.length > 0) {
      out.push('', '### Not counted: signed by an equivocator', '', '| builder | organization | signed | builder id in the attestation | envelope |', '|---|---|---|---|---|')
      for (const u of f.uncounted) out.push(`| ${md(u.builder)} | ${md(u.org)} | ${uncountedClaim(u, md)} | ${md(u.builderId)} | \`${u.envelopeId}\` |`)
    }
    out.push('')
  }
  return out.join('\n')
}

/** Rebuilds a builder's output tree locally from its signed file list and content-addressed files. */
export async function materializeOutput (urls: string[], fileListSha256: string, dest: string): Promise<void> {
  const list = await fetchFileList(urls, fileListSha256)
  if (list === undefined) throw new QuorateError('HTTP_FAILED', `file list ${fileListSha256} is not served by ${urls.join(', ')}`)
  mkdirSync(dest, { recursive: true })
  for (const f of list.files) {
    if (f.path.split('/').includes('..') || f.path.startsWith('/')) throw new QuorateError('OUTPUT_INVALID', `file list ${fileListSha256} names a path outside its output: ${term(f.path)}`)
    const p = join(dest, f.path)
    if (f.type === 'dir') { mkdirSync(p, { recursive: true }); continue }
    mkdirSync(dirname(p), { recursive: true })
    if (f.type === 'symlink') { symlinkSync(f.target ?? '', p); continue }
    const body = await fetchVerified(urls, 'file', f.sha256 ?? '')
    if (body === undefined) throw new QuorateError('HTTP_FAILED', `file ${term(f.path)} (${f.sha256 ?? ''}) is not served by ${urls.join(', ')}`)
    writeFileSync(p, body)
    chmodSync(p, f.executable === true ? 0o755 : 0o644)
  }
}

/**
 * The repository of a commit when `--repo` is not given: the policy's only repository, else the
 * one whose envelopes the nodes hold for this commit. Asks for --repo when that is not exactly one.
 */
export async function findCommitRepository (policy: Policy, nodes: string[], commit: string): Promise<string> {
  const ids = [...policy.repositories.keys()]
  if (ids.length === 1) return ids[0]
  const found: string[] = []
  for (const repoId of ids) {
    for (const url of nodes) {
      try {
        const body = await nodeClient(url).get('commit', { repo: repoId, commit })
        if (body.envelopes.length > 0) { found.push(repoId); break }
      } catch {}
    }
  }
  if (found.length === 1) return found[0]
  if (found.length === 0) throw new QuorateError('USAGE', `no node holds attestations for commit ${commit} in any of the policy's repositories (${ids.join(', ')}); check the commit id, or give --repo ID`)
  throw new QuorateError('USAGE', `commit ${commit} has attestations in several repositories (${found.join(', ')}); give --repo ID`)
}

export interface DiffoscopeOptions {
  /** The two builders to compare; default: a builder of the trusted result against one of each other result. */
  builders?: [string, string]
}

export interface DiffoscopeReport {
  /** 0 when every compared pair is identical, 1 when one differs, 2 when diffoscope failed. */
  exitCode: number
  output: string
  pairs: Array<{ a: string, b: string, narA: string, narB: string, exitCode: number }>
}

/** Sets every mtime under dir (and dir) to the epoch: the rebuilt trees carry no time (the NAR has none), so diffoscope shows none. */
function fixMtimes (dir: string): void {
  const walk = (p: string): void => {
    const st = lstatSync(p)
    if (st.isDirectory()) for (const name of readdirSync(p)) walk(join(p, name))
    if (!st.isSymbolicLink()) utimesSync(p, 0, 0)
  }
  walk(dir)
}

/**
 * Runs diffoscope on builders' outputs for the commit, rebuilt from their signed file lists
 * (content checked by hash) in a temporary directory that is removed afterwards. Says how to
 * install diffoscope when it is missing.
 */
export async function diffoscopeCommit (finding: AuditFinding, policy: Policy, nodes: string[], opts: DiffoscopeOptions = {}): Promise<DiffoscopeReport> {
  const which = spawnSync('diffoscope', ['--version'], { encoding: 'utf8' })
  if (which.error !== undefined) throw new QuorateError('USAGE', 'diffoscope is not installed; install it with "apt-get install diffoscope" (Debian/Ubuntu) or "pip install diffoscope", then run again')
  const where = `${finding.repoId}@${finding.commit}`
  let pairs: Array<[AuditBuild, AuditBuild]>
  if (opts.builders !== undefined) {
    const pick = (name: string): AuditBuild => finding.builds.find(b => b.builder === name) ??
      usageError(`${name} has no counted build result for ${where}; builders with one: ${finding.builds.map(b => b.builder).join(', ') || 'none'}`)
    pairs = [[pick(opts.builders[0]), pick(opts.builders[1])]]
  } else {
    const byResult = [...new Map(finding.builds.map(b => [b.resultKey, b])).values()]
    if (byResult.length < 2) usageError(`${where}: the builders do not disagree; nothing to compare (name two with --builders a,b to compare anyway)`)
    // The trusted result against each dissenting one; with none trusted, the first against each other.
    const reference = byResult.find(b => b.narSha256 === finding.trustedNarSha256) ?? byResult[0]
    pairs = byResult.filter(b => b !== reference).map(b => [reference, b])
  }
  const urlsFor = (builder: string): string[] => [policy.builders.get(builder)?.endpoint, ...nodes].filter((u): u is string => u !== undefined)
  const work = mkdtempSync(join(tmpdir(), 'quorate-diffoscope-'))
  try {
    const dirs = new Map<string, string>()
    const dirOf = async (b: AuditBuild): Promise<string> => {
      let dir = dirs.get(b.builder)
      if (dir === undefined) {
        dir = join(work, `${b.builder.replace(/[^A-Za-z0-9._-]/g, '_')}-${b.narSha256.slice(0, 12)}`)
        await materializeOutput(urlsFor(b.builder), b.fileListSha256, dir)
        fixMtimes(dir)
        dirs.set(b.builder, dir)
      }
      return dir
    }
    const out: string[] = []
    const report: DiffoscopeReport['pairs'] = []
    for (const [a, b] of pairs) {
      const [dirA, dirB] = [await dirOf(a), await dirOf(b)]
      const r = spawnSync('diffoscope', ['--no-progress', '--exclude-directory-metadata=yes', '--text', '-', basename(dirA), basename(dirB)],
        { cwd: work, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: 600_000 })
      const code = r.status ?? 2
      report.push({ a: a.builder, b: b.builder, narA: a.narSha256, narB: b.narSha256, exitCode: code })
      out.push(`# ${where}: ${term(a.builder)} (${short(a.narSha256)}${a.narSha256 === finding.trustedNarSha256 ? ', trusted' : ''}) against ${term(b.builder)} (${short(b.narSha256)}): ${code === 0 ? 'identical' : code === 1 ? 'different' : 'diffoscope failed'}`)
      out.push(r.stdout + (code > 1 ? r.stderr : ''))
    }
    const exitCode = report.some(p => p.exitCode > 1) ? 2 : report.some(p => p.exitCode === 1) ? 1 : 0
    return { exitCode, output: out.join('\n'), pairs: report }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

function usageError (msg: string): never {
  throw new QuorateError('USAGE', msg)
}

/**
 * What the fingerprint differences say about build roots: builders in different pinned roots,
 * or on their hosts' differing toolchains (no root pinned). Null when neither.
 */
function buildRootNote (diffs: Array<{ field: string }>): string | null {
  if (diffs.some(d => d.field.startsWith('root.'))) return 'the builders used different build roots (or some none): compare root.manifestDigest above'
  if (diffs.some(d => d.field.startsWith('tools.') && d.field !== 'tools.git' && d.field !== 'tools.bwrap')) return 'no common build root: the builders used their hosts\' toolchains, which differ (see tools above); pin one with recipe.root (README: Pinning the build root)'
  return null
}
