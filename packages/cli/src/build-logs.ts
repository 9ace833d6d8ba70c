import { decideQuorum, parseAttestation, parseEnvelope, type Decision, type Policy } from '@quorate/core'
import { nodeClient, type FetchedLog } from './node-client.js'

/** One builder's signed build-log digest for a commit, from an envelope the decision counted. */
export interface BuildLogRef {
  builder: string
  org: string
  kind: 'build' | 'failure'
  logSha256: string
  envelopeId: string
  /** Failures: which attempt, and the signed reason. */
  attempt?: number
  reason?: string
}

/** A fetched build log and the node that served it. */
export interface LogFound extends FetchedLog {
  from: string
}

/**
 * The build-log digests a commit's envelopes sign, one per counted build or failure (a failure's
 * latest attempt per builder), read only from envelopes the decision verified under the policy.
 */
export function buildLogRefs (policy: Policy, repoId: string, commit: string, evidence: { envelopes: readonly object[], proofs: ReadonlyArray<readonly [object, object]> }, decision?: Decision): BuildLogRef[] {
  const d = decision ?? decideQuorum({ policy, repoId, commit, envelopes: evidence.envelopes, equivocationProofs: evidence.proofs })
  const counted = new Map<string, { builder: string, org: string }>()
  for (const v of d.votes) counted.set(v.envelopeId, v)
  for (const f of d.failures) counted.set(f.envelopeId, f)
  const refs: BuildLogRef[] = []
  for (const raw of evidence.envelopes) {
    try {
      const parsed = parseEnvelope(raw)
      const who = counted.get(parsed.id)
      if (who === undefined || refs.some(r => r.envelopeId === parsed.id)) continue
      const a = parseAttestation(parsed.payloadBytes)
      if (a.kind === 'build') refs.push({ builder: who.builder, org: who.org, kind: 'build', logSha256: a.logSha256, envelopeId: parsed.id })
      else if (a.kind === 'failure') refs.push({ builder: who.builder, org: who.org, kind: 'failure', logSha256: a.logSha256, envelopeId: parsed.id, attempt: a.attempt, reason: a.reason })
    } catch {}
  }
  // Per builder: its build, else its latest failed attempt.
  const best = new Map<string, BuildLogRef>()
  for (const r of refs) {
    const cur = best.get(r.builder)
    if (cur === undefined || (cur.kind === 'failure' && (r.kind === 'build' || (r.attempt ?? 0) > (cur.attempt ?? 0)))) best.set(r.builder, r)
  }
  return [...best.values()].sort((x, y) => x.builder < y.builder ? -1 : 1)
}

/**
 * A build log from the first node that serves it: a whole log is checked against the signed
 * digest (a node serving another one is skipped), a truncated one (head and tail) is taken as
 * it is. Nodes, then the policy's builder endpoints.
 */
export async function fetchBuildLog (urls: string[], sha256: string, opts: { token?: string, timeoutMs?: number } = {}): Promise<LogFound | undefined> {
  for (const url of urls) {
    try {
      const log = await nodeClient(url, { token: opts.token }).log(sha256, { timeoutMs: opts.timeoutMs ?? 10_000 })
      if (log !== undefined) return { ...log, from: url }
    } catch {}
  }
  return undefined
}

/** The last `lines` lines of a log, each prefixed with `indent`. */
export function logTail (text: string, lines = 15, indent = '    '): string {
  const all = text.replace(/\n$/, '').split('\n')
  return all.slice(-lines).map(l => indent + l).join('\n')
}

/**
 * Every place that may hold a log, each once: the signing builder's own endpoint first (when
 * `builder` names one), then the given nodes, then the policy's other builder endpoints.
 */
export function logSources (policy: Policy, nodes: string[], builder?: string): string[] {
  const own = builder !== undefined ? policy.builders.get(builder)?.endpoint : undefined
  const out: string[] = []
  for (const url of [...(own !== undefined ? [own] : []), ...nodes, ...[...policy.builders.values()].map(b => b.endpoint)]) {
    if (url !== undefined && !out.includes(url)) out.push(url)
  }
  return out
}

/**
 * For a failed commit: the end of each failing builder's log, ready to print (what `verify` and
 * `audit` show so the reader does not have to go looking for "the end of the build log").
 */
export async function failureLogTails (policy: Policy, nodes: string[], repoId: string, commit: string, evidence: { envelopes: readonly object[], proofs: ReadonlyArray<readonly [object, object]> }, opts: { token?: string, lines?: number, indent?: string, decision?: Decision } = {}): Promise<Array<{ builder: string, logSha256: string, text: string }>> {
  const out: Array<{ builder: string, logSha256: string, text: string }> = []
  const indent = opts.indent ?? '    '
  for (const ref of buildLogRefs(policy, repoId, commit, evidence, opts.decision)) {
    if (ref.kind !== 'failure') continue
    const log = await fetchBuildLog(logSources(policy, nodes, ref.builder), ref.logSha256, { token: opts.token, timeoutMs: 5000 })
    const head = `build log of ${ref.builder} (${ref.org}), attempt ${ref.attempt ?? 1}, sha256 ${ref.logSha256}`
    if (log === undefined) {
      out.push({ builder: ref.builder, logSha256: ref.logSha256, text: `${head}: no node serves it (quorate logs --repo ${repoId} --commit ${commit} --builder ${ref.builder} tries again)` })
      continue
    }
    const lines = opts.lines ?? 15
    const check = log.complete ? 'checked against the signed digest' : `head and tail of a ${log.totalBytes}-byte log, not checkable against the signed digest`
    out.push({ builder: ref.builder, logSha256: ref.logSha256, text: `${head}, last ${lines} lines (${check}; from ${log.from}):\n${logTail(log.text, lines, indent)}` })
  }
  return out
}
