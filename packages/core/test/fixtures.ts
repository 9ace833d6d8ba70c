import {
  keyPairFromSeed, makeProvenanceStatement, makeFailureStatement, makeRefObservationStatement, signStatement,
  parsePolicy, FAILURE_PREDICATE_V1, type BuilderKeyPair, type Policy, type Recipe, type LogPosition
} from '../src/index.js'

export const RECIPE: Recipe = { build: ['sh', '-c', 'mkdir -p out && echo hi > out/a'], output: 'out', outputKind: 'dir' }
export const COMMIT = 'a'.repeat(40)
export const H = (c: string): string => c.repeat(64)

export interface TestBuilder { name: string, org: string, key: BuilderKeyPair, revoked?: boolean }

export function builder (name: string, org: string, seedByte: number, revoked = false): TestBuilder {
  return { name, org, key: keyPairFromSeed(new Uint8Array(32).fill(seedByte)), revoked }
}

export function policyFor (builders: TestBuilder[], quorum: { threshold?: number, mode?: 'majority' | 'unanimous' } = {}, repo: Record<string, unknown> = {}): Policy {
  const byName = new Map<string, { name: string, org: string, keys: Array<{ publicKey: string, revoked?: boolean }> }>()
  for (const b of builders) {
    const e = byName.get(b.name) ?? { name: b.name, org: b.org, keys: [] }
    e.keys.push(b.revoked === true ? { publicKey: b.key.publicKeyHex, revoked: true } : { publicKey: b.key.publicKeyHex })
    byName.set(b.name, e)
  }
  return parsePolicy({
    version: 1,
    builders: [...byName.values()],
    repositories: [{ id: 'hello', url: '/srv/hello.git', branches: ['main'], recipe: RECIPE, ...repo }],
    quorum
  }, 'test-policy.json')
}

export function buildEnvelope (b: TestBuilder, narChar: string, opts: { commit?: string, seq?: number, prev?: string | null, recipe?: Recipe, repoId?: string } = {}): Uint8Array {
  const seq = opts.seq ?? 0
  const log: LogPosition = { seq, prev: seq === 0 ? null : (opts.prev ?? H('e')) }
  return signStatement(makeProvenanceStatement({
    repoId: opts.repoId ?? 'hello',
    ref: 'refs/heads/main',
    commit: opts.commit ?? COMMIT,
    recipe: opts.recipe ?? RECIPE,
    narSha256: H(narChar),
    fileListSha256: H(narChar === 'f' ? '0' : narChar),
    topLevelFiles: [],
    logSha256: H('1'),
    fingerprint: { sandbox: 'none' },
    builderId: `https://quorate.dev/builders/${b.org}/${b.name}`,
    invocationId: 'inv',
    startedOn: '2026-01-01T00:00:00Z',
    finishedOn: '2026-01-01T00:00:01Z',
    log
  }), b.key).bytes
}

export function failureEnvelope (b: TestBuilder, seq = 0, opts: { attempt?: number, final?: boolean, reason?: string, commit?: string, v1?: boolean } = {}): Uint8Array {
  const st = makeFailureStatement({
    repoId: 'hello', ref: 'refs/heads/main', commit: opts.commit ?? COMMIT, recipe: RECIPE, exitStatus: 2, timedOut: false,
    reason: opts.reason ?? 'build exited with status 2', logSha256: H('2'), fingerprint: {}, builderId: 'x', finishedOn: '',
    log: { seq, prev: seq === 0 ? null : H('e') }, attempt: opts.attempt ?? 1, final: opts.final ?? false
  }) as { predicateType: string, predicate: Record<string, unknown> }
  if (opts.v1 === true) {
    // What a node before failure predicate v2 signed: no attempt, no final.
    st.predicateType = FAILURE_PREDICATE_V1
    delete st.predicate.attempt
    delete st.predicate.final
  }
  return signStatement(st as unknown as Record<string, unknown>, b.key).bytes
}

export function refEnvelope (b: TestBuilder, seq = 0, opts: { commit?: string, previous?: string | null, fastForward?: boolean, introduced?: string[], ref?: string } = {}): Uint8Array {
  return signStatement(makeRefObservationStatement({
    repoId: 'hello', ref: opts.ref ?? 'refs/heads/main', commit: opts.commit ?? COMMIT, previous: opts.previous ?? null, fastForward: opts.fastForward ?? false,
    introduced: opts.introduced, builderId: 'x', observedOn: '', log: { seq, prev: seq === 0 ? null : H('e') }
  }), b.key).bytes
}
