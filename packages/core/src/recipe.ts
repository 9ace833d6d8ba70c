import { canonicalize } from './canonical-json.js'
import { parseImageSpec, type OciImageSpec } from './oci-image-spec.js'
import { QuorateError } from './errors.js'

/** The part of a recipe that defines "the same build"; its canonical JSON is hashed into recipeDigest. */
export interface Recipe {
  /** The build root: an OCI image pinned by manifest (or image-index) digest, mounted read-only as `/`. */
  root?: RecipeRoot
  /** argv run in the checkout with network on, before `build` (optional). */
  fetch?: string[]
  /** argv run in the checkout with no network. */
  build: string[]
  /** path of the output, relative to the checkout root. */
  output: string
  outputKind: 'dir' | 'oci'
  /** OCI packing options (outputKind "oci"), validated when the recipe is parsed. */
  image?: OciImageSpec
}

/** `recipe.root`: `{image: "<name>@sha256:<64 hex>"}`, never a tag. */
export interface RecipeRoot { image: string }

/** An image reference split into its parts: `registry/path@sha256:hex`. */
export interface RootImageRef {
  /** The reference as written: `<name>@sha256:<hex>`. */
  image: string
  /** Everything before `@`: `[registry[:port]/]path`. */
  name: string
  /** Registry host[:port]; `docker.io` when the name has no registry part (Docker's convention). */
  registry: string
  /** The repository path inside the registry (`library/debian` for `debian`). */
  repository: string
  /** `sha256:<64 hex>`. */
  digest: string
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const REGISTRY = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/

/**
 * Parses `<name>@sha256:<64 hex>` (a build root image). A tag beside the digest, a missing
 * digest or a malformed name is refused: a tag never enters a recipe digest. `field` names the
 * field in errors (e.g. "policy.json: repositories[0].recipe.root.image").
 */
export function parseRootImage (raw: unknown, field: string): RootImageRef {
  const example = 'give "<registry>/<name>@sha256:<64 hex digest>", e.g. "registry.example.org/build/debian@sha256:…" (find the digest with `skopeo inspect docker://IMAGE:TAG`)'
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 512) throw new QuorateError('RECIPE_INVALID', `${field}: must be a string; ${example}`, { field })
  const at = raw.indexOf('@')
  if (at < 0) throw new QuorateError('RECIPE_INVALID', `${field}: "${raw}" names no digest; a build root is pinned by digest only, so ${example}`, { field })
  const name = raw.slice(0, at)
  const digest = raw.slice(at + 1)
  if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new QuorateError('RECIPE_INVALID', `${field}: "${digest}" is not a sha256 digest (sha256: and 64 lowercase hex); ${example}`, { field })
  const parts = name.split('/')
  const last = parts[parts.length - 1]
  if (last.includes(':')) {
    throw new QuorateError('RECIPE_INVALID', `${field}: "${raw}" has a tag (":${last.slice(last.indexOf(':') + 1)}") beside the digest; a tag never enters a recipe digest: remove it and keep only the digest`, { field })
  }
  let registry = 'docker.io'
  let path = parts
  if (parts.length > 1 && (parts[0].includes('.') || parts[0].includes(':') || parts[0] === 'localhost' || parts[0].startsWith('['))) {
    registry = parts[0]
    path = parts.slice(1)
    if (!REGISTRY.test(registry)) throw new QuorateError('RECIPE_INVALID', `${field}: registry "${registry}" is not a host name with an optional port`, { field })
  }
  if (path.length === 0 || !path.every(c => PATH_COMPONENT.test(c))) {
    throw new QuorateError('RECIPE_INVALID', `${field}: "${name}" is not an image name (lowercase letters, digits, ".", "_", "-" separated by "/"); ${example}`, { field })
  }
  const repository = registry === 'docker.io' && path.length === 1 ? `library/${path[0]}` : path.join('/')
  return { image: raw, name, registry, repository, digest }
}

/** Limits travel with the recipe but are not part of its digest. */
export interface RecipeLimits {
  timeoutSeconds: number
  memoryBytes: number
  maxProcesses: number
  maxOutputBytes: number
  maxLogBytes: number
}

export const DEFAULT_RECIPE_LIMITS: RecipeLimits = {
  timeoutSeconds: 600,
  memoryBytes: 4 * 1024 ** 3,
  maxProcesses: 512,
  maxOutputBytes: 2 * 1024 ** 3,
  maxLogBytes: 1024 * 1024
}

export interface RecipeSpec { recipe: Recipe, limits: RecipeLimits }

function isStringArray (v: unknown): v is string[] {
  return Array.isArray(v) && v.length > 0 && v.every(s => typeof s === 'string')
}

/** Validates an untrusted recipe object; `where` names it in errors (e.g. "policy.json: repositories[0].recipe"). */
export function parseRecipeSpec (raw: unknown, where: string): RecipeSpec {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new QuorateError('RECIPE_INVALID', `${where}: must be an object like {"build":["make"],"output":"out","outputKind":"dir"}`)
  }
  const r = raw as Record<string, unknown>
  const known = new Set(['root', 'fetch', 'build', 'output', 'outputKind', 'image', 'timeoutSeconds', 'memoryBytes', 'maxProcesses', 'maxOutputBytes', 'maxLogBytes'])
  for (const k of Object.keys(r)) {
    if (!known.has(k)) throw new QuorateError('RECIPE_INVALID', `${where}.${k}: unknown field; allowed: ${[...known].join(', ')}`)
  }
  if (!isStringArray(r.build)) throw new QuorateError('RECIPE_INVALID', `${where}.build: must be a non-empty array of strings (an argv such as ["sh","-c","make"])`)
  if (r.fetch !== undefined && !isStringArray(r.fetch)) throw new QuorateError('RECIPE_INVALID', `${where}.fetch: must be a non-empty array of strings when given`)
  if (typeof r.output !== 'string' || r.output.length === 0) throw new QuorateError('RECIPE_INVALID', `${where}.output: must be a path inside the checkout, such as "dist"`)
  const parts = r.output.split('/')
  if (r.output.startsWith('/') || parts.includes('..') || r.output.includes('\0')) {
    throw new QuorateError('RECIPE_INVALID', `${where}.output: "${r.output}" leaves the checkout; give a relative path without ".."`)
  }
  const outputKind = r.outputKind ?? 'dir'
  if (outputKind !== 'dir' && outputKind !== 'oci') throw new QuorateError('RECIPE_INVALID', `${where}.outputKind: must be "dir" or "oci"`)
  let root: RecipeRoot | undefined
  if (r.root !== undefined) {
    if (typeof r.root !== 'object' || r.root === null || Array.isArray(r.root)) {
      throw new QuorateError('RECIPE_INVALID', `${where}.root: must be an object {"image": "<name>@sha256:<digest>"}`, { field: `${where}.root` })
    }
    const rr = r.root as Record<string, unknown>
    for (const k of Object.keys(rr)) if (k !== 'image') throw new QuorateError('RECIPE_INVALID', `${where}.root.${k}: unknown field; allowed: image`, { field: `${where}.root.${k}` })
    root = { image: parseRootImage(rr.image, `${where}.root.image`).image }
  }
  const recipe: Recipe = { ...(root !== undefined ? { root } : {}), build: [...r.build], output: r.output, outputKind }
  if (r.fetch !== undefined) recipe.fetch = [...(r.fetch as string[])]
  // Typed here, once: a valid spec is a field-for-field copy, so the recipe digest is unchanged.
  if (r.image !== undefined) recipe.image = parseImageSpec(r.image, `${where}.image`)
  const limits = { ...DEFAULT_RECIPE_LIMITS }
  for (const k of Object.keys(DEFAULT_RECIPE_LIMITS) as Array<keyof RecipeLimits>) {
    const v = r[k]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new QuorateError('RECIPE_INVALID', `${where}.${k}: must be a positive whole number`)
    limits[k] = v
  }
  try {
    canonicalize(recipe) // what recipeDigest hashes must be writable: no lone surrogates, no absurd nesting
  } catch (err) {
    // found by fuzzing: a .quorate/recipe.json with "\ud800" in its argv parsed, then failed at signing time
    throw new QuorateError('RECIPE_INVALID', `${where}: ${(err as Error).message.replace(/^\$\.?/, '')}`, { field: where })
  }
  return { recipe, limits }
}
