import { describe, it, expect } from 'vitest'
import { canonicalize, isQuorateError, parsePolicy, parseRecipeSpec, parseRootImage, recipeDigestOf, rootRegistriesOf, sha256Hex } from '../src/index.js'
import { builder, RECIPE } from './fixtures.js'

const DIGEST = `sha256:${'ab'.repeat(32)}`
const a = builder('a', 'org-a', 1)

function policyWith (repo: Record<string, unknown>): Record<string, unknown> {
  return {
    version: 1,
    builders: [{ name: a.name, org: a.org, keys: [{ publicKey: a.key.publicKeyHex }] }],
    repositories: [{ id: 'hello', url: '/srv/hello.git', branches: ['main'], ...repo }],
    quorum: {}
  }
}

function errorOf (f: () => unknown): { code: string, message: string, field: unknown } {
  try {
    f()
  } catch (err) {
    if (!isQuorateError(err)) throw err
    return { code: err.code, message: err.message, field: err.fields.field }
  }
  throw new Error('expected an error')
}

describe('recipe.root', () => {
  it('is part of the recipe digest, and a recipe without it keeps the digest it had before roots existed', () => {
    const plain = parseRecipeSpec({ build: ['make'], output: 'out', outputKind: 'dir' }, 'r').recipe
    expect(recipeDigestOf(plain)).toBe(sha256Hex(canonicalize({ build: ['make'], output: 'out', outputKind: 'dir' })))
    const rooted = parseRecipeSpec({ root: { image: `127.0.0.1:5000/build/debian@${DIGEST}` }, build: ['make'], output: 'out', outputKind: 'dir' }, 'r').recipe
    expect(rooted.root).toEqual({ image: `127.0.0.1:5000/build/debian@${DIGEST}` })
    expect(recipeDigestOf(rooted)).toBe(sha256Hex(canonicalize({ root: { image: `127.0.0.1:5000/build/debian@${DIGEST}` }, build: ['make'], output: 'out', outputKind: 'dir' })))
    const other = parseRecipeSpec({ root: { image: `127.0.0.1:5000/build/debian@sha256:${'cd'.repeat(32)}` }, build: ['make'], output: 'out', outputKind: 'dir' }, 'r').recipe
    expect(recipeDigestOf(other)).not.toBe(recipeDigestOf(rooted))
  })

  it('refuses a tag beside the digest when the policy is loaded, naming the field', () => {
    const e = errorOf(() => parsePolicy(policyWith({ recipe: { ...RECIPE, root: { image: `registry.example.org/debian:bookworm@${DIGEST}` } } }), 'policy.json'))
    expect(e.code).toBe('POLICY_INVALID')
    expect(e.field).toBe('repositories[0].recipe.root.image')
    expect(e.message).toMatch(/^policy.json: repositories\[0\]\.recipe\.root\.image: .*has a tag \(":bookworm"\) beside the digest/)
  })

  it('refuses a tag alone, a bad digest, an unknown field and a malformed name', () => {
    expect(errorOf(() => parseRecipeSpec({ ...RECIPE, root: { image: 'debian:bookworm' } }, '.quorate/recipe.json')).message)
      .toMatch(/^\.quorate\/recipe\.json\.root\.image: "debian:bookworm" names no digest/)
    expect(errorOf(() => parseRecipeSpec({ ...RECIPE, root: { image: 'debian@sha256:abc' } }, 'r')).message).toMatch(/r\.root\.image: "sha256:abc" is not a sha256 digest/)
    expect(errorOf(() => parseRecipeSpec({ ...RECIPE, root: { image: `debian@${DIGEST}`, tag: 'x' } }, 'r')).message).toMatch(/r\.root\.tag: unknown field/)
    expect(errorOf(() => parseRecipeSpec({ ...RECIPE, root: `debian@${DIGEST}` }, 'r')).message).toMatch(/r\.root: must be an object/)
    expect(errorOf(() => parseRecipeSpec({ ...RECIPE, root: { image: `Debian/../x@${DIGEST}` } }, 'r')).message).toMatch(/is not an image name/)
  })

  it('splits names into registry and repository the way Docker does', () => {
    expect(parseRootImage(`debian@${DIGEST}`, 'f')).toMatchObject({ registry: 'docker.io', repository: 'library/debian', digest: DIGEST })
    expect(parseRootImage(`127.0.0.1:5000/build/debian@${DIGEST}`, 'f')).toMatchObject({ registry: '127.0.0.1:5000', repository: 'build/debian' })
    expect(parseRootImage(`localhost/x@${DIGEST}`, 'f')).toMatchObject({ registry: 'localhost', repository: 'x' })
  })
})

describe('requireRoot', () => {
  it('is read per repository; a pinned recipe without a root is refused at load', () => {
    const ok = parsePolicy(policyWith({ recipe: { ...RECIPE, root: { image: `127.0.0.1:5000/build/debian@${DIGEST}` } }, requireRoot: true }), 'p')
    expect(ok.repositories.get('hello')?.requireRoot).toBe(true)
    expect(rootRegistriesOf(ok)).toEqual(['127.0.0.1:5000'])
    expect(parsePolicy(policyWith({ recipeFromRepo: true, requireRoot: true }), 'p').repositories.get('hello')?.requireRoot).toBe(true)
    expect(parsePolicy(policyWith({ recipe: RECIPE }), 'p').repositories.get('hello')?.requireRoot).toBe(false)
    const e = errorOf(() => parsePolicy(policyWith({ recipe: RECIPE, requireRoot: true }), 'p'))
    expect(e.field).toBe('repositories[0].recipe.root')
    expect(e.message).toMatch(/requireRoot/)
    expect(errorOf(() => parsePolicy(policyWith({ recipe: RECIPE, requireRoot: 'yes' }), 'p')).field).toBe('repositories[0].requireRoot')
  })
})
