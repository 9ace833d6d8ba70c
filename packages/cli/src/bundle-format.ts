/**
 * The in-toto attestation bundle convention (`.intoto.jsonl`): one DSSE envelope per line,
 * nothing else. `quorate bundle --format intoto-jsonl` writes it beside our JSON bundle, and
 * `quorate verify --bundle` reads both. The JSONL form has no header: the repository and commit
 * come from the envelopes (or --repo/--commit), and no policy digest travels with it.
 */
import { QuorateError, isCommitSha, isRepoId, parseJsonStrict } from '@quorate/core'

export type BundleFormat = 'json' | 'intoto-jsonl'

/** One envelope per line; equivocation proofs are flattened into their two envelopes (a verifier finds the fork again). */
export function intotoJsonl (envelopes: object[], proofs: Array<[object, object]> = []): string {
  const seen = new Set<string>()
  const lines: string[] = []
  for (const e of [...envelopes, ...proofs.flat()]) {
    const line = JSON.stringify(e)
    if (seen.has(line)) continue
    seen.add(line)
    lines.push(line)
  }
  return lines.map(l => l + '\n').join('')
}

/** True when the text looks like JSONL envelopes rather than one JSON bundle document. */
export function isIntotoJsonl (text: string): boolean {
  const first = text.split('\n').find(l => l.trim() !== '')
  if (first === undefined) return false
  try {
    const v = JSON.parse(first) as Record<string, unknown>
    return v !== null && typeof v === 'object' && typeof v.payloadType === 'string'
  } catch {
    return false
  }
}

/** The (repoId, commit) the envelopes' first subjects name, counting each pair once. */
function subjectsOf (envelopes: object[]): Map<string, { repoId: string, commit: string }> {
  const found = new Map<string, { repoId: string, commit: string }>()
  for (const e of envelopes) {
    try {
      const payload = (e as { payload?: unknown }).payload
      if (typeof payload !== 'string') continue
      const st = JSON.parse(Buffer.from(payload, 'base64').toString('utf8')) as { subject?: Array<{ name?: unknown }>, predicateType?: unknown }
      const name = st.subject?.[0]?.name
      if (typeof name !== 'string') continue
      // Ref observations name their tip, which may be a later commit that brought this one: builds and failures name the commit.
      if (typeof st.predicateType === 'string' && st.predicateType.includes('ref-observation')) continue
      const at = name.lastIndexOf('@')
      const repoId = name.slice(0, at)
      const commit = name.slice(at + 1)
      if (at > 0 && isRepoId(repoId) && isCommitSha(commit)) found.set(`${repoId}@${commit}`, { repoId, commit })
    } catch {}
  }
  return found
}

/** Reads an `.intoto.jsonl` bundle: every line one untrusted envelope. */
export function readIntotoJsonl (text: string, file: string, repoId: string | undefined, commit: string | undefined): { envelopes: object[], repoId: string, commit: string } {
  const envelopes: object[] = []
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return
    let v: unknown
    try {
      v = parseJsonStrict(line, `${file} line ${i + 1}`)
    } catch (err) {
      throw new QuorateError('CONFIG_INVALID', `${file} line ${i + 1}: not a JSON envelope (${(err as Error).message}); an .intoto.jsonl bundle holds one DSSE envelope per line`)
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new QuorateError('CONFIG_INVALID', `${file} line ${i + 1}: not a DSSE envelope object`)
    envelopes.push(v)
  })
  if (repoId !== undefined && commit !== undefined) return { envelopes, repoId, commit }
  const named = [...subjectsOf(envelopes).values()].filter(s => (repoId === undefined || s.repoId === repoId) && (commit === undefined || s.commit === commit))
  if (named.length !== 1) {
    throw new QuorateError('USAGE', `${file}: ${named.length === 0 ? 'no build or failure envelope names a commit' : `the envelopes name ${named.length} commits`}; give --repo ID and --commit SHA`)
  }
  return { envelopes, repoId: named[0].repoId, commit: named[0].commit }
}
