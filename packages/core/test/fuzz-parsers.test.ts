// Property-based fuzzing of the parsers that read files people and repositories write: the
// network policy, recipes (pinned in the policy or read from .quorate/recipe.json at a commit) and
// strict JSON. Properties: any input either parses or fails with a QuorateError naming the
// problem (never a TypeError, RangeError or URIError); valid inputs round-trip.
// QUORATE_FUZZ_RUNS=10 multiplies the runs for a longer local session.
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import {
  parsePolicy, parseRecipeSpec, parseJsonStrict, canonicalize, policyDigestOf, recipeDigestOf, sha256Hex,
  keyPairFromSeed, isQuorateError, gitUrlProblem, type QuorateErrorCode
} from '../src/index.js'

const SCALE = Number(process.env.QUORATE_FUZZ_RUNS ?? 1)
const runs = (n: number): { numRuns: number } => ({ numRuns: Math.max(1, Math.round(n * SCALE)) })

/** Runs f; returns undefined, or the error when it is a QuorateError with one of `codes`; rethrows anything else. */
function typedOutcome<T> (f: () => T, codes: QuorateErrorCode[]): T | undefined {
  try {
    return f()
  } catch (err) {
    if (isQuorateError(err) && codes.includes(err.code)) return undefined
    throw err
  }
}

const PUBLIC_KEYS = Array.from({ length: 8 }, (_, i) => keyPairFromSeed(new Uint8Array(32).fill(i + 1)).publicKeyHex)

const nameArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._ -]{0,20}$/)
const repoIdArb = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/)
const argvArb = fc.array(fc.string({ maxLength: 12 }), { minLength: 1, maxLength: 4 })
const outputArb = fc.array(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,8}$/).filter(s => s !== '..'), { minLength: 1, maxLength: 3 }).map(p => p.join('/'))
const digestArb = fc.stringMatching(/^[0-9a-f]{64}$/)
const imageArb = fc.tuple(fc.constantFrom('registry.example.org/build/debian', 'debian', 'localhost:5000/x/y', '[::1]:5000/r'), digestArb).map(([n, d]) => `${n}@sha256:${d}`)

/** A recipe as written in JSON (digest fields and limits). */
const recipeArb = fc.record({
  root: fc.option(imageArb.map(image => ({ image })), { nil: undefined }),
  fetch: fc.option(argvArb, { nil: undefined }),
  build: argvArb,
  output: outputArb,
  outputKind: fc.constantFrom('dir', 'oci'),
  // recipe.image is validated when the recipe is parsed: generate valid OCI packing options.
  image: fc.option(fc.record({
    refName: fc.constantFrom('app:1.0', 'example.org/app:v2', 'x'),
    architecture: fc.constantFrom('amd64', 'arm64'),
    config: fc.record({ Cmd: argvArb, Env: fc.array(fc.constantFrom('A=1', 'PATH=/bin'), { maxLength: 2 }), Labels: fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 2 }) }, { requiredKeys: [] })
  }, { requiredKeys: [] }), { nil: undefined }),
  timeoutSeconds: fc.option(fc.integer({ min: 1, max: 100_000 }), { nil: undefined })
}, { requiredKeys: ['build', 'output', 'outputKind'] }).map(r => JSON.parse(JSON.stringify(r)) as Record<string, unknown>)

const urlArb = fc.oneof(
  repoIdArb.map(id => `/srv/git/${id}.git`),
  repoIdArb.map(id => `https://git.example.org/team/${id}.git`),
  repoIdArb.map(id => `ssh://git@git.example.org/${id}.git`),
  repoIdArb.map(id => `git@git.example.org:team/${id}.git`)
)

/** A valid policy document: distinct builder names and keys, 1–6 organizations, a threshold above half. */
const policyArb = fc.record({
  builders: fc.uniqueArray(nameArb, { minLength: 1, maxLength: 6, comparator: (a, b) => a === b }),
  orgPick: fc.array(fc.nat(5), { minLength: 6, maxLength: 6 }),
  revoked: fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }),
  endpoint: fc.option(fc.constantFrom('https://quorate.alpha.example', 'http://127.0.0.1:8080'), { nil: undefined }),
  repos: fc.uniqueArray(fc.record({
    id: repoIdArb,
    url: urlArb,
    branches: fc.array(fc.constantFrom('main', 'release/*', 'dev'), { minLength: 1, maxLength: 2 }),
    tags: fc.option(fc.array(fc.constantFrom('v*', 'stable'), { maxLength: 2 }), { nil: undefined }),
    recipe: fc.option(recipeArb, { nil: undefined })
  }), { minLength: 1, maxLength: 3, selector: r => r.id }),
  extraThreshold: fc.nat(5),
  thresholdGiven: fc.boolean(),
  mode: fc.option(fc.constantFrom('majority', 'unanimous'), { nil: undefined })
}).map(p => {
  const builders = p.builders.map((name, i) => ({
    name,
    org: `org-${p.orgPick[i] ?? 0}`,
    ...(i === 0 && p.endpoint !== undefined ? { endpoint: p.endpoint } : {}),
    keys: [{ publicKey: PUBLIC_KEYS[i] as string, ...(p.revoked[i] === true ? { revoked: true } : {}) }]
  }))
  const orgs = new Set(builders.map(b => b.org)).size
  const min = Math.floor(orgs / 2) + 1
  const threshold = Math.min(orgs, min + p.extraThreshold)
  return {
    version: 1,
    builders,
    repositories: p.repos.map(r => ({
      id: r.id,
      url: r.url,
      branches: r.branches,
      ...(r.tags !== undefined ? { tags: r.tags } : {}),
      ...(r.recipe !== undefined ? { recipe: r.recipe } : { recipeFromRepo: true })
    })),
    quorum: { ...(p.thresholdGiven ? { threshold } : {}), ...(p.mode !== undefined ? { mode: p.mode } : {}) }
  }
})

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }

/** Every path to a value inside a JSON document (the root excluded). */
function pathsOf (v: Json, prefix: Array<string | number> = []): Array<Array<string | number>> {
  if (v === null || typeof v !== 'object') return []
  const entries: Array<[string | number, Json]> = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v)
  return entries.flatMap(([k, x]) => [[...prefix, k], ...pathsOf(x, [...prefix, k])])
}

type Mutation = { kind: 'replace', value: Json } | { kind: 'delete' } | { kind: 'add', key: string, value: Json }

/** A copy of `doc` with one value replaced, removed, or a key added next to it. */
function mutate (doc: Json, pick: number, m: Mutation): Json {
  const copy = structuredClone(doc)
  const paths = pathsOf(copy)
  if (paths.length === 0) return m.kind === 'replace' ? m.value : copy
  const path = paths[pick % paths.length] as Array<string | number>
  let parent = copy as Record<string | number, Json>
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, Json>
  const last = path[path.length - 1] as string | number
  if (m.kind === 'replace') parent[last] = m.value
  else if (m.kind === 'delete') { if (Array.isArray(parent)) parent.splice(last as number, 1); else delete parent[last] } else if (!Array.isArray(parent)) parent[m.key] = m.value
  return copy
}

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('replace' as const), value: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json> }),
  fc.constant({ kind: 'delete' as const }),
  fc.record({ kind: fc.constant('add' as const), key: fc.string({ maxLength: 8 }), value: fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json> })
)

/** Strings with the characters parsers trip on: percent signs, brackets, controls, bidi overrides, lone surrogates. */
const nastyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.array(fc.constantFrom('%', '%zz', '%E0%A4%A', '[', ']', '@', ':', '//', '\\', '..', '\u0000', '\u202e', '\u009b', '\ud800', '-', '::', 'ext', 'https://', 'a'), { maxLength: 10 }).map(a => a.join(''))
)

describe('fuzz: network policy parser', () => {
  it('accepts every generated valid policy; the digest is that of its canonical JSON and survives a round-trip', () => {
    fc.assert(fc.property(policyArb, doc => {
      const p = parsePolicy(doc, 'policy.json')
      expect(p.digest).toBe(sha256Hex(canonicalize(doc)))
      const again = parsePolicy(JSON.parse(JSON.stringify(doc)), 'policy.json')
      expect(again.digest).toBe(p.digest)
      expect(again.document).toEqual(doc)
      expect(p.builders.size).toBe(doc.builders.length)
      expect([...p.repositories.keys()]).toEqual(doc.repositories.map(r => r.id))
      expect(p.threshold * 2).toBeGreaterThan(p.orgs.length)
      expect(p.threshold).toBeLessThanOrEqual(p.orgs.length)
      for (const r of doc.repositories) {
        if (r.recipe !== undefined) expect(p.repositories.get(r.id)?.recipeDigest).toMatch(/^[0-9a-f]{64}$/)
      }
    }), runs(50))
  })

  it('refuses any single mutation of a valid policy with POLICY_INVALID, or accepts it as a valid policy', () => {
    fc.assert(fc.property(policyArb, fc.nat(), mutationArb, (doc, pick, m) => {
      const mutated = mutate(doc as unknown as Json, pick, m)
      const p = typedOutcome(() => parsePolicy(mutated, 'policy.json'), ['POLICY_INVALID'])
      if (p !== undefined) expect(p.digest).toBe(policyDigestOf(mutated))
    }), runs(400))
  })

  it('refuses arbitrary JSON values with POLICY_INVALID', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), v => {
      typedOutcome(() => parsePolicy(v, 'policy.json'), ['POLICY_INVALID'])
    }), runs(300))
  })

  it('treats hostile repository URLs (percent signs, brackets, controls) as a POLICY_INVALID or a valid URL', () => {
    fc.assert(fc.property(policyArb, nastyString, fc.constantFrom('', 'https://', 'ssh://', 'git://', 'https://u:', 'ssh://'), (doc, s, scheme) => {
      const url = scheme === 'https://u:' ? `https://${s}@git.example.org/x.git` : `${scheme}${s}`
      const bad = structuredClone(doc)
      ;(bad.repositories[0] as { url: string }).url = url
      const p = typedOutcome(() => parsePolicy(bad, 'policy.json'), ['POLICY_INVALID'])
      // one rule: whatever the policy accepts, the builder's own URL check accepts too
      if (p !== undefined) expect(gitUrlProblem(url)).toBeUndefined()
    }), runs(300))
  })

  it('refuses a lone surrogate anywhere in a policy with POLICY_INVALID naming the file (was CANONICAL_JSON without it)', () => {
    const doc = fc.sample(policyArb, { numRuns: 1, seed: 7 })[0] as ReturnType<typeof structuredClone>
    doc.repositories[0].url = '/srv/git/\ud800.git'
    expect(() => parsePolicy(doc, 'policy.json')).toThrow(expect.objectContaining({ code: 'POLICY_INVALID', message: expect.stringMatching(/^policy\.json: repositories\[0\]\.url: .*lone UTF-16 surrogate/) }))
  })

  it('refuses a user name with malformed percent-encoding in a repository URL as POLICY_INVALID (was a URIError)', () => {
    const doc = fc.sample(policyArb, { numRuns: 1, seed: 7 })[0] as ReturnType<typeof structuredClone>
    for (const url of ['https://%zz@git.example.org/x.git', 'ssh://%E0%A4%A@git.example.org/x.git']) {
      doc.repositories[0].url = url
      expect(() => parsePolicy(doc, 'policy.json')).toThrow(expect.objectContaining({ code: 'POLICY_INVALID' }))
    }
  })
})

describe('fuzz: recipe parser', () => {
  it('round-trips valid recipes: parsing the parsed recipe gives the same recipe and digest', () => {
    fc.assert(fc.property(recipeArb, raw => {
      const spec = parseRecipeSpec(raw, 'recipe.json')
      const again = parseRecipeSpec(JSON.parse(JSON.stringify(spec.recipe)), 'recipe.json')
      expect(again.recipe).toEqual(spec.recipe)
      expect(recipeDigestOf(again.recipe)).toBe(recipeDigestOf(spec.recipe))
      if (raw.timeoutSeconds !== undefined) expect(spec.limits.timeoutSeconds).toBe(raw.timeoutSeconds)
      expect(spec.recipe.output.split('/')).not.toContain('..')
    }), runs(300))
  })

  it('refuses any mutation of a valid recipe with RECIPE_INVALID, or gives a recipe whose output stays in the checkout', () => {
    fc.assert(fc.property(recipeArb, fc.nat(), mutationArb, (raw, pick, m) => {
      const mutated = mutate(raw as Json, pick, m)
      const spec = typedOutcome(() => parseRecipeSpec(mutated, 'recipe.json'), ['RECIPE_INVALID'])
      if (spec === undefined) return
      expect(spec.recipe.output.startsWith('/')).toBe(false)
      expect(spec.recipe.output.split('/')).not.toContain('..')
      expect(typeof recipeDigestOf(spec.recipe)).toBe('string')
    }), runs(400))
  })

  it('refuses hostile output paths, argv strings and root images with RECIPE_INVALID, or gives a recipe with a digest', () => {
    fc.assert(fc.property(nastyString, nastyString, nastyString, (output, image, arg) => {
      for (const raw of [
        { build: ['make'], output, outputKind: 'dir' },
        { build: ['make'], output: 'out', outputKind: 'dir', root: { image } },
        { build: ['sh', '-c', arg], fetch: [arg], output: 'out', outputKind: 'dir', image: { refName: arg, config: { Labels: { [arg]: arg } } } }
      ]) {
        const spec = typedOutcome(() => parseRecipeSpec(raw, 'recipe.json'), ['RECIPE_INVALID'])
        if (spec !== undefined) expect(recipeDigestOf(spec.recipe)).toMatch(/^[0-9a-f]{64}$/)
      }
    }), runs(300))
  })

  it('refuses a recipe whose strings hold a lone surrogate with RECIPE_INVALID (was accepted, then failed when signing)', () => {
    for (const raw of [{ build: ['sh', '-c', 'echo \ud800'], output: 'out' }, { build: ['make'], output: 'out\udc00' }, { build: ['make'], output: 'out', image: { config: { Labels: { '\ud83d': 'x' } } } }]) {
      expect(() => parseRecipeSpec(raw, '.quorate/recipe.json')).toThrow(expect.objectContaining({ code: 'RECIPE_INVALID', message: expect.stringContaining('lone UTF-16 surrogate') }))
    }
  })

  it('refuses a .quorate/recipe.json nested thousands of levels deep as malformed (was a RangeError from the digest)', () => {
    const deep = `{"build":["make"],"output":"out","outputKind":"dir","image":{"x":${'['.repeat(20_000)}${']'.repeat(20_000)}}}`
    expect(() => parseJsonStrict(deep, '.quorate/recipe.json')).toThrow(expect.objectContaining({ code: 'ENVELOPE_MALFORMED', message: expect.stringContaining('nested deeper than') }))
    // an object built in memory is refused by the recipe parser (recipe.image is validated field by field) and the canonical writer
    let nested: unknown = []
    for (let i = 0; i < 20_000; i++) nested = [nested]
    expect(() => parseRecipeSpec({ build: ['make'], output: 'out', outputKind: 'dir', image: { x: nested } }, 'recipe.json')).toThrow(expect.objectContaining({ code: 'RECIPE_INVALID' }))
    expect(() => recipeDigestOf({ build: ['make'], output: 'out', outputKind: 'dir', image: { x: nested } as never })).toThrow(expect.objectContaining({ code: 'CANONICAL_JSON' }))
  })
})

describe('fuzz: strict JSON', () => {
  it('parses what JSON.stringify writes (no duplicate keys) to the same value, and canonical JSON is stable', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 5 }), v => {
      const parsed = parseJsonStrict(JSON.stringify(v), 'x')
      expect(parsed).toEqual(JSON.parse(JSON.stringify(v)))
      const c = canonicalize(parsed)
      expect(canonicalize(parseJsonStrict(c, 'x'))).toBe(c)
    }), runs(300))
  })

  it('refuses arbitrary text with ENVELOPE_MALFORMED or parses it', () => {
    fc.assert(fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 60 }), fc.array(fc.constantFrom('{', '}', '[', ']', '"a"', ':', ',', '1', '"\\u0000"', '"\\"', ' ', 'null'), { maxLength: 30 }).map(a => a.join(''))), text => {
      typedOutcome(() => parseJsonStrict(text, 'x'), ['ENVELOPE_MALFORMED'])
    }), runs(500))
  })
})
