import { QuorateError } from './errors.js'

/** The part of a recipe that defines "the same build"; its canonical JSON is hashed into recipeDigest. */
export interface Recipe {
  /** argv run in the checkout with network on, before `build` (optional). */
  fetch?: string[]
  /** argv run in the checkout with no network. */
  build: string[]
  /** path of the output, relative to the checkout root. */
  output: string
  outputKind: 'dir' | 'oci'
  image?: Record<string, unknown>
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
  const known = new Set(['fetch', 'build', 'output', 'outputKind', 'image', 'timeoutSeconds', 'memoryBytes', 'maxProcesses', 'maxOutputBytes', 'maxLogBytes'])
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
  if (r.image !== undefined && (typeof r.image !== 'object' || r.image === null || Array.isArray(r.image))) {
    throw new QuorateError('RECIPE_INVALID', `${where}.image: must be an object`)
  }
  const recipe: Recipe = { build: [...r.build], output: r.output, outputKind }
  if (r.fetch !== undefined) recipe.fetch = [...(r.fetch as string[])]
  if (r.image !== undefined) recipe.image = r.image as Record<string, unknown>
  const limits = { ...DEFAULT_RECIPE_LIMITS }
  for (const k of Object.keys(DEFAULT_RECIPE_LIMITS) as Array<keyof RecipeLimits>) {
    const v = r[k]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new QuorateError('RECIPE_INVALID', `${where}.${k}: must be a positive whole number`)
    limits[k] = v
  }
  return { recipe, limits }
}
