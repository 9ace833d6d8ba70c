import { escapeForDisplay } from './display-escape.js'
import { ALLOWED_GIT_URL_FORMS, gitUrlProblem, redactUrl } from './git-url.js'
import { canonicalize } from './canonical-json.js'
import { QuorateError } from './errors.js'
import { sha256Hex } from './hash.js'
import { keyidOf, parsePublicKey } from './keys.js'
import { parseRecipeSpec, parseRootImage, type RecipeSpec } from './recipe.js'
import { isRepoId, recipeDigestOf } from './statement.js'

export type QuorumMode = 'majority' | 'unanimous'

export interface PolicyKey { publicKey: string, revoked?: boolean }
export interface PolicyBuilder { name: string, org: string, endpoint?: string, keys: PolicyKey[] }
export interface PolicyRepository {
  id: string
  url: string
  branches: string[]
  tags?: string[]
  recipe?: Record<string, unknown>
  recipeFromRepo?: boolean
  /** Refuse recipes without a pinned build root (signed failure with that reason). */
  requireRoot?: boolean
}
/** The network policy exactly as written in JSON (DESIGN.md "The network policy"). */
export interface PolicyDocument {
  version: 1
  builders: PolicyBuilder[]
  repositories: PolicyRepository[]
  quorum: { threshold?: number, mode?: QuorumMode }
}

export interface KeyInfo {
  keyid: string
  publicKey: Uint8Array
  publicKeyHex: string
  builder: string
  org: string
  revoked: boolean
}

export interface RepositoryPolicy {
  id: string
  url: string
  branches: string[]
  tags: string[]
  /** Pinned recipe, when the policy gives one; undefined with recipeFromRepo. */
  recipe?: RecipeSpec
  recipeDigest?: string
  recipeFromRepo: boolean
  /** Recipes without `root` are refused (DESIGN.md "Build root"). */
  requireRoot: boolean
}

/** A validated policy, indexed for the hot paths (key lookup by keyid). */
export interface Policy {
  document: PolicyDocument
  digest: string
  keys: Map<string, KeyInfo>
  builders: Map<string, PolicyBuilder>
  orgs: string[]
  repositories: Map<string, RepositoryPolicy>
  threshold: number
  mode: QuorumMode
}

function bad (where: string, field: string, msg: string): never {
  throw new QuorateError('POLICY_INVALID', `${where}: ${field}: ${msg}`, { field })
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$/

/**
 * Validates an untrusted policy document. `where` names its source (a file path) so every
 * error reads "policy.json: builders[2].keys[0].publicKey: …".
 */
export function parsePolicy (raw: unknown, where = 'policy'): Policy {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) bad(where, '(top level)', 'must be a JSON object with version, builders, repositories and quorum')
  const doc = raw as Record<string, unknown>
  for (const k of Object.keys(doc)) {
    if (!['version', 'builders', 'repositories', 'quorum'].includes(k)) bad(where, k, 'unknown field; allowed: version, builders, repositories, quorum')
  }
  if (doc.version !== 1) bad(where, 'version', 'must be 1')
  if (!Array.isArray(doc.builders) || doc.builders.length === 0) bad(where, 'builders', 'must list at least one builder')
  const keys = new Map<string, KeyInfo>()
  const builders = new Map<string, PolicyBuilder>()
  const orgs = new Set<string>()
  doc.builders.forEach((b: unknown, i: number) => {
    const f = `builders[${i}]`
    if (b === null || typeof b !== 'object') bad(where, f, 'must be an object {name, org, keys}')
    const bb = b as Record<string, unknown>
    for (const k of Object.keys(bb)) if (!['name', 'org', 'endpoint', 'keys'].includes(k)) bad(where, `${f}.${k}`, 'unknown field; allowed: name, org, endpoint, keys')
    if (typeof bb.name !== 'string' || !NAME.test(bb.name)) bad(where, `${f}.name`, 'must be 1–64 letters, digits, spaces, dots, dashes or underscores')
    if (builders.has(bb.name)) bad(where, `${f}.name`, `"${bb.name}" is listed twice; each builder appears once, with all its keys`)
    if (typeof bb.org !== 'string' || !NAME.test(bb.org)) bad(where, `${f}.org`, 'must be 1–64 letters, digits, spaces, dots, dashes or underscores')
    if (bb.endpoint !== undefined && (typeof bb.endpoint !== 'string' || !/^https?:\/\/[^\s]+$/.test(bb.endpoint))) bad(where, `${f}.endpoint`, 'must be an http(s) URL of the builder\'s API')
    if (!Array.isArray(bb.keys) || bb.keys.length === 0) bad(where, `${f}.keys`, 'must list at least one key {publicKey}')
    const builderKeys: PolicyKey[] = []
    bb.keys.forEach((k: unknown, j: number) => {
      const kf = `${f}.keys[${j}]`
      const kk = (k ?? {}) as Record<string, unknown>
      if (typeof k !== 'object' || k === null) bad(where, kf, 'must be an object {publicKey, revoked?}')
      for (const x of Object.keys(kk)) if (x !== 'publicKey' && x !== 'revoked') bad(where, `${kf}.${x}`, 'unknown field; allowed: publicKey, revoked')
      let publicKey: Uint8Array
      try {
        publicKey = parsePublicKey(kk.publicKey, `${kf}.publicKey`)
      } catch (err) {
        throw new QuorateError('POLICY_INVALID', `${where}: ${(err as Error).message}`, { field: `${kf}.publicKey` })
      }
      if (kk.revoked !== undefined && typeof kk.revoked !== 'boolean') bad(where, `${kf}.revoked`, 'must be true or false')
      const publicKeyHex = kk.publicKey as string
      const keyid = keyidOf(publicKeyHex)
      const other = keys.get(keyid)
      if (other !== undefined) bad(where, `${kf}.publicKey`, `this key is already listed for builder "${other.builder}"; a key belongs to one builder`)
      keys.set(keyid, { keyid, publicKey, publicKeyHex, builder: bb.name as string, org: bb.org as string, revoked: kk.revoked === true })
      builderKeys.push(kk.revoked === true ? { publicKey: publicKeyHex, revoked: true } : { publicKey: publicKeyHex })
    })
    builders.set(bb.name, { name: bb.name, org: bb.org, ...(bb.endpoint !== undefined ? { endpoint: bb.endpoint as string } : {}), keys: builderKeys })
    orgs.add(bb.org)
  })

  if (!Array.isArray(doc.repositories) || doc.repositories.length === 0) bad(where, 'repositories', 'must list at least one repository')
  const repositories = new Map<string, RepositoryPolicy>()
  doc.repositories.forEach((r: unknown, i: number) => {
    const f = `repositories[${i}]`
    if (r === null || typeof r !== 'object') bad(where, f, 'must be an object {id, url, branches, recipe}')
    const rr = r as Record<string, unknown>
    for (const k of Object.keys(rr)) if (!['id', 'url', 'branches', 'tags', 'recipe', 'recipeFromRepo', 'requireRoot'].includes(k)) bad(where, `${f}.${k}`, 'unknown field; allowed: id, url, branches, tags, recipe, recipeFromRepo, requireRoot')
    if (!isRepoId(rr.id)) bad(where, `${f}.id`, 'must match [a-z0-9][a-z0-9._-]{0,63} (a name, never a URL)')
    if (repositories.has(rr.id)) bad(where, `${f}.id`, `"${rr.id}" is listed twice`)
    if (typeof rr.url !== 'string' || rr.url.length === 0) bad(where, `${f}.url`, 'must be the git URL to build from')
    // The same rule the builder applies before running git: a policy a node would refuse is invalid.
    const urlProblem = gitUrlProblem(rr.url)
    if (urlProblem !== undefined) bad(where, `${f}.url`, `${escapeForDisplay(redactUrl(rr.url))} is not allowed: ${urlProblem}; use ${ALLOWED_GIT_URL_FORMS}`)
    const globs = (v: unknown, name: string, required: boolean): string[] => {
      if (v === undefined && !required) return []
      if (!Array.isArray(v) || (required && v.length === 0) || !v.every(x => typeof x === 'string' && x.length > 0 && !x.startsWith('refs/'))) {
        bad(where, `${f}.${name}`, `must be a${required ? ' non-empty' : ''} list of ${name === 'tags' ? 'tag' : 'branch'} names or glob patterns such as "main" or "release/*" (without "refs/")`)
      }
      return [...v]
    }
    const branches = globs(rr.branches, 'branches', true)
    const tags = globs(rr.tags, 'tags', false)
    if (rr.recipeFromRepo !== undefined && typeof rr.recipeFromRepo !== 'boolean') bad(where, `${f}.recipeFromRepo`, 'must be true or false')
    const fromRepo = rr.recipeFromRepo === true
    if (fromRepo === (rr.recipe !== undefined)) bad(where, f, 'give either "recipe" (pinned by the policy) or "recipeFromRepo": true (read .quorate/recipe.json at each commit), not both or neither')
    let recipe: RecipeSpec | undefined
    if (rr.recipe !== undefined) {
      try {
        recipe = parseRecipeSpec(rr.recipe, `${f}.recipe`)
      } catch (err) {
        const field = err instanceof QuorateError && typeof err.fields.field === 'string' ? err.fields.field : `${f}.recipe`
        throw new QuorateError('POLICY_INVALID', `${where}: ${(err as Error).message}`, { field })
      }
    }
    if (rr.requireRoot !== undefined && typeof rr.requireRoot !== 'boolean') bad(where, `${f}.requireRoot`, 'must be true or false')
    const requireRoot = rr.requireRoot === true
    if (requireRoot && recipe !== undefined && recipe.recipe.root === undefined) {
      bad(where, `${f}.recipe.root`, 'is missing but the repository sets "requireRoot": true; pin a build root ({"image": "<name>@sha256:<digest>"}) or drop requireRoot')
    }
    repositories.set(rr.id, {
      id: rr.id,
      url: rr.url,
      branches,
      tags,
      ...(recipe !== undefined ? { recipe, recipeDigest: recipeDigestOf(recipe.recipe) } : {}),
      recipeFromRepo: fromRepo,
      requireRoot
    })
  })

  const q = (doc.quorum ?? {}) as Record<string, unknown>
  if (typeof q !== 'object' || Array.isArray(q)) bad(where, 'quorum', 'must be an object {threshold, mode}')
  for (const k of Object.keys(q)) if (k !== 'threshold' && k !== 'mode') bad(where, `quorum.${k}`, 'unknown field; allowed: threshold, mode')
  const orgCount = orgs.size
  const mode = (q.mode ?? 'majority') as QuorumMode
  if (mode !== 'majority' && mode !== 'unanimous') bad(where, 'quorum.mode', 'must be "majority" or "unanimous"')
  const threshold = q.threshold === undefined ? Math.floor(orgCount / 2) + 1 : q.threshold
  if (typeof threshold !== 'number' || !Number.isSafeInteger(threshold)) bad(where, 'quorum.threshold', 'must be a whole number')
  if (threshold > orgCount) bad(where, 'quorum.threshold', `${threshold} exceeds the ${orgCount} organization${orgCount === 1 ? '' : 's'} listed; lower it or add builders`)
  if (threshold * 2 <= orgCount) bad(where, 'quorum.threshold', `${threshold} is not more than half of the ${orgCount} organizations, so two partial views could trust two different digests; use at least ${Math.floor(orgCount / 2) + 1}`)

  let digest: string
  try {
    digest = policyDigestOf(raw)
  } catch (err) {
    // found by fuzzing: a lone surrogate ("\ud800") in any string escaped as CANONICAL_JSON without the file's name
    throw new QuorateError('POLICY_INVALID', `${where}: ${(err as Error).message.replace(/^\$\.?/, '')}`, { field: 'digest' })
  }
  return {
    document: raw as PolicyDocument,
    digest,
    keys,
    builders,
    orgs: [...orgs].sort(),
    repositories,
    threshold,
    mode
  }
}

/**
 * The registries (host[:port]) that the policy's pinned recipes take build roots from: the
 * default set a node may pull from (recipes from repositories cannot widen it).
 */
export function rootRegistriesOf (policy: Policy): string[] {
  const out = new Set<string>()
  for (const r of policy.repositories.values()) {
    const image = r.recipe?.recipe.root?.image
    if (image !== undefined) out.add(parseRootImage(image, 'recipe.root.image').registry)
  }
  return [...out].sort()
}

export function policyDigestOf (doc: unknown): string {
  return sha256Hex(canonicalize(doc))
}
