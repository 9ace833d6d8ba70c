// Property-based fuzzing of gossip bytes: checkEnvelope is the topic validator's whole judgement
// (network hands it every gossiped and synced message). Properties: for any bytes it returns a
// verdict and never throws; nothing but a correctly signed, well-formed statement by a policy key
// is accepted; a valid envelope re-encoded by a relay keeps its id and stays accepted.
// QUORATE_FUZZ_RUNS=10 multiplies the runs for a longer local session.
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { checkEnvelope, signEnvelope, IN_TOTO_PAYLOAD_TYPE, type EnvelopeCheck } from '../src/index.js'
import { builder, policyFor, buildEnvelope, failureEnvelope, refEnvelope, COMMIT } from './fixtures.js'

const SCALE = Number(process.env.QUORATE_FUZZ_RUNS ?? 1)
const runs = (n: number): { numRuns: number } => ({ numRuns: Math.max(1, Math.round(n * SCALE)) })

const alpha = builder('alpha', 'a', 1)
const beta = builder('beta', 'b', 2)
const retired = builder('gamma', 'c', 3, true)
const policy = policyFor([alpha, beta, retired])

const VALID = [
  buildEnvelope(alpha, '1'),
  buildEnvelope(beta, '2', { seq: 1 }),
  failureEnvelope(alpha, 2, { attempt: 2, final: true }),
  refEnvelope(beta, 0, { introduced: [COMMIT] })
]
const decode = (b: Uint8Array): Record<string, unknown> => JSON.parse(Buffer.from(b).toString('utf8')) as Record<string, unknown>
const statementOf = (b: Uint8Array): Record<string, unknown> => JSON.parse(Buffer.from(decode(b).payload as string, 'base64').toString('utf8')) as Record<string, unknown>
const originalIds = new Set(VALID.map(v => { const c = checkEnvelope(v, policy); if (c.verdict !== 'accept') throw new Error(c.reason); return c.verified.id }))

/** checkEnvelope, asserting it returned a verdict of the right shape instead of throwing. */
function check (input: Uint8Array | string | object, opts: { repoId?: string } = {}): EnvelopeCheck {
  const c = checkEnvelope(input, policy, opts)
  expect(['accept', 'reject', 'ignore']).toContain(c.verdict)
  if (c.verdict !== 'accept') expect(typeof c.reason).toBe('string')
  return c
}

/** Sign arbitrary payload text with a policy key, so a check gets past the signature to every parse path. */
function signText (text: string, key = alpha.key): Uint8Array {
  const env = signEnvelope(new TextEncoder().encode(text), IN_TOTO_PAYLOAD_TYPE, key.secretKey, key.keyid)
  return new TextEncoder().encode(JSON.stringify(env))
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
function pathsOf (v: Json, prefix: Array<string | number> = []): Array<Array<string | number>> {
  if (v === null || typeof v !== 'object') return []
  const entries: Array<[string | number, Json]> = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v)
  return entries.flatMap(([k, x]) => [[...prefix, k], ...pathsOf(x, [...prefix, k])])
}
function replaceAt (doc: Json, pick: number, value: Json | undefined): Json {
  const copy = structuredClone(doc)
  const paths = pathsOf(copy)
  const path = paths[pick % paths.length] as Array<string | number>
  let parent = copy as Record<string | number, Json>
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, Json>
  const last = path[path.length - 1] as string | number
  if (value === undefined) { if (Array.isArray(parent)) parent.splice(last as number, 1); else delete parent[last] } else parent[last] = value
  return copy
}

const valueArb = fc.option(fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom('hello', 'other-repo', COMMIT, 'A'.repeat(40), '0'.repeat(64), -1, 2 ** 53, 1e308, '', '\u202e', 'refs/heads/main', null, [], {})
) as fc.Arbitrary<Json>, { nil: undefined, freq: 5 })

describe('fuzz: gossip bytes (checkEnvelope, the topic validator)', () => {
  it('gives a reject or ignore verdict for arbitrary bytes and text, never an exception', () => {
    fc.assert(fc.property(fc.oneof(
      fc.uint8Array({ maxLength: 2048 }),
      fc.string({ unit: 'binary', maxLength: 512 }).map(s => new TextEncoder().encode(s)),
      fc.jsonValue({ maxDepth: 4 }).map(v => new TextEncoder().encode(JSON.stringify(v)))
    ), bytes => {
      const c = check(bytes, { repoId: 'hello' })
      expect(c.verdict).not.toBe('accept')
    }), runs(500))
  })

  it('never throws on byte flips, truncations and insertions of valid envelopes; accepts only the original statement', () => {
    fc.assert(fc.property(fc.constantFrom(...VALID), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'cut', 'insert')), { minLength: 1, maxLength: 4 }), (valid, edits) => {
      let b = Buffer.from(valid)
      for (const [at, byte, kind] of edits) {
        const i = at % (b.length + 1)
        if (kind === 'set') { b = Buffer.from(b); if (i < b.length) b[i] = byte } else if (kind === 'cut') b = b.subarray(0, i)
        else b = Buffer.concat([b.subarray(0, i), Buffer.from([byte]), b.subarray(i)])
      }
      const c = check(new Uint8Array(b), { repoId: 'hello' })
      if (c.verdict === 'accept') expect(originalIds.has(c.verified.id)).toBe(true)
    }), runs(400))
  })

  it('never throws on envelope-level mutations (payloadType, payload, signatures, keyid, extra fields)', () => {
    fc.assert(fc.property(fc.constantFrom(...VALID), fc.nat(), valueArb, (valid, pick, value) => {
      const mutated = replaceAt(decode(valid) as Json, pick, value)
      const c = check(new TextEncoder().encode(JSON.stringify(mutated)), { repoId: 'hello' })
      if (c.verdict === 'accept') expect(originalIds.has(c.verified.id)).toBe(true)
      check(mutated as object) // the already-parsed form (own-log recovery passes objects)
    }), runs(300))
  })

  it('never throws on statement mutations signed by a policy key (every parse path past the signature)', () => {
    fc.assert(fc.property(fc.constantFrom(...VALID), fc.nat(), valueArb, fc.boolean(), (valid, pick, value, byBeta) => {
      const mutated = replaceAt(statementOf(valid) as Json, pick, value)
      const c = check(signText(JSON.stringify(mutated), byBeta ? beta.key : alpha.key), { repoId: 'hello' })
      if (c.verdict === 'accept') {
        expect(c.verified.builder).toBe(byBeta ? 'beta' : 'alpha')
        expect(c.verified.attestation.repoId).toBe('hello')
      }
    }), runs(250))
  })

  it('keeps the id and the accept verdict when a relay re-encodes a valid envelope (key order, whitespace)', () => {
    fc.assert(fc.property(fc.constantFrom(...VALID), fc.boolean(), fc.constantFrom(0, 1, 2, '\t'), (valid, reverse, space) => {
      const env = decode(valid)
      const reordered = reverse ? Object.fromEntries(Object.entries(env).reverse()) : env
      const c = check(JSON.stringify(reordered, null, space), { repoId: 'hello' })
      expect(c.verdict).toBe('accept')
      if (c.verdict === 'accept') expect(originalIds.has(c.verified.id)).toBe(true)
      expect(check(valid, { repoId: 'other' }).verdict).toBe('reject') // topic mismatch
    }), runs(60))
  })

  it('rejects a statement nested thousands of levels deep, signed or forged, instead of throwing a RangeError', () => {
    const st = statementOf(VALID[0] as Uint8Array) as { predicate: { buildDefinition: { externalParameters: { recipe: Record<string, unknown> } } } }
    st.predicate.buildDefinition.externalParameters.recipe.image = { x: '@@DEEP@@' }
    const text = JSON.stringify(st).replace('"@@DEEP@@"', `${'['.repeat(20_000)}${']'.repeat(20_000)}`)
    const signed = signText(text)
    expect(signed.byteLength).toBeLessThan(64 * 1024)
    for (const bytes of [signed, signText(text, builder('mallory', 'm', 66).key)]) {
      const c = check(bytes, { repoId: 'hello' })
      expect(c).toMatchObject({ verdict: 'reject', reason: expect.stringContaining('nested deeper than') })
    }
  })
})
