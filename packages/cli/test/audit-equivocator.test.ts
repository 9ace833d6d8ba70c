// Regression tests for issue 14 items 9 and 13, with real signed envelopes decided by core:
// bidi and C1 controls a signer writes (U+202E, U+009B) come out escaped in every audit
// format, and an equivocator's attestations on a commit are shown, marked not counted, even
// when its proof comes from another commit of the repository.
import { describe, it, expect } from 'vitest'
import {
  keyPairFromSeed, makeProvenanceStatement, makeFailureStatement, parsePolicy, signStatement,
  type BuilderKeyPair, type Recipe
} from '@quorate/core'
import { auditEvidence, renderJson, renderMarkdown, renderText, type AuditFinding } from '../src/audit.js'

const RECIPE: Recipe = { build: ['sh', '-c', 'mkdir -p out && echo hi > out/a'], output: 'out', outputKind: 'dir' }
const COMMIT = 'a'.repeat(40)
const OTHER_COMMIT = 'b'.repeat(40)
const H = (c: string): string => c.repeat(64)
const RLO = '\u202e'
const CSI = '\u009b'
const HOSTILE_ID = `https://quorate.dev/builders/mallory/${RLO}exe.txt${CSI}2J`
const HOSTILE_REASON = `exit 2 ${CSI}31m${RLO}deliberately reversed`

const key = (n: number): BuilderKeyPair => keyPairFromSeed(new Uint8Array(32).fill(n))
const keys = { a: key(1), b: key(2), c: key(3), m: key(4) }
const policy = parsePolicy({
  version: 1,
  builders: Object.entries(keys).map(([name, k]) => ({ name: `${name}-ci`, org: `org-${name}`, keys: [{ publicKey: k.publicKeyHex }] })),
  repositories: [{ id: 'hello', url: '/srv/hello.git', branches: ['main'], recipe: RECIPE }],
  quorum: { threshold: 3 }
}, 'policy.json')

function build (k: BuilderKeyPair, narChar: string, opts: { commit?: string, seq?: number, builderId?: string, invocationId?: string } = {}): object {
  const seq = opts.seq ?? 0
  return signStatement(makeProvenanceStatement({
    repoId: 'hello', ref: 'refs/heads/main', commit: opts.commit ?? COMMIT, recipe: RECIPE, narSha256: H(narChar), fileListSha256: H(narChar),
    topLevelFiles: [], logSha256: H('1'), fingerprint: { sandbox: 'bwrap' }, builderId: opts.builderId ?? 'https://quorate.dev/builders/x',
    invocationId: opts.invocationId ?? 'inv', startedOn: '2026-01-01T00:00:00Z', finishedOn: '2026-01-01T00:00:01Z', log: { seq, prev: seq === 0 ? null : H('e') }
  }), k).envelope
}

function failure (k: BuilderKeyPair, seq: number): object {
  return signStatement(makeFailureStatement({
    repoId: 'hello', ref: 'refs/heads/main', commit: COMMIT, recipe: RECIPE, exitStatus: 2, timedOut: false, reason: HOSTILE_REASON,
    logSha256: H('2'), fingerprint: {}, builderId: HOSTILE_ID, finishedOn: '', log: { seq, prev: seq === 0 ? null : H('e') }
  }), k).envelope
}

async function finding (): Promise<AuditFinding> {
  // mallory-ci forked its log on another commit (two envelopes at seq 0): the proof.
  const proof: [object, object] = [build(keys.m, 'c', { commit: OTHER_COMMIT }), build(keys.m, 'd', { commit: OTHER_COMMIT, invocationId: 'again' })]
  const envelopes = [
    build(keys.a, 'f'), build(keys.b, 'f'), build(keys.c, 'f'),
    // What mallory signed on the audited commit: a result that would have been a fourth vote, and a failure.
    build(keys.m, 'f', { seq: 1, builderId: HOSTILE_ID }),
    failure(keys.m, 2)
  ]
  return await auditEvidence(policy, [], 'hello', COMMIT, { envelopes, proofs: [proof] })
}

describe('audit: an equivocator\'s attestations on a commit', () => {
  it('are listed as not counted while the honest quorum decides, in every format', async () => {
    const f = await finding()
    expect(f.status).toBe('trusted')
    expect(f.equivocations.map(e => e.builder)).toEqual(['m-ci'])
    expect(f.builds.map(b => b.builder)).toEqual(['a-ci', 'b-ci', 'c-ci'])
    expect(f.uncounted.map(u => [u.builder, u.kind, u.why])).toEqual([['m-ci', 'build', 'equivocator'], ['m-ci', 'failure', 'equivocator']])
    expect(f.uncounted[0].narSha256).toBe(H('f'))
    expect(f.uncounted[1].reason).toBe(HOSTILE_REASON)
    expect(renderText([f])).toMatch(/not counted \(equivocator\): m-ci \(org-m\) signed result f{64}/)
    expect(renderMarkdown([f])).toContain('### Not counted: signed by an equivocator')
    expect(JSON.parse(renderJson([f], policy.digest)).findings[0].uncounted).toHaveLength(2)
  })
})

describe('audit: bidi and C1 controls from signers (U+202E, U+009B)', () => {
  it('are escaped in text, Markdown and JSON output, and the JSON still carries the exact strings', async () => {
    const f = await finding()
    const text = renderText([f])
    const markdown = renderMarkdown([f])
    const json = renderJson([f], policy.digest)
    for (const out of [text, markdown, json]) {
      expect(out).not.toContain(RLO)
      expect(out).not.toContain(CSI)
      expect(out).toContain('u202e')
      expect(out).toContain('u009b')
    }
    expect(text).toContain(`as https://quorate.dev/builders/mallory/\\u202eexe.txt\\u009b2J`)
    expect(text).toContain('exit 2 \\u009b31m\\u202edeliberately reversed')
    const parsed = JSON.parse(json)
    expect(parsed.findings[0].uncounted[1]).toMatchObject({ builderId: HOSTILE_ID, reason: HOSTILE_REASON })
  })
})
