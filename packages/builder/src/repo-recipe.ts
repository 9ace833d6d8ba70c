import { DEFAULT_RECIPE_LIMITS, parseJsonStrict, parseRecipeSpec, type RecipeSpec } from '@quorate/core'
import type { GitMirror } from './git-mirror.js'

/** Where a commit carries its own recipe when the policy sets `recipeFromRepo: true`. */
export const REPO_RECIPE_PATH = '.quorate/recipe.json'

/**
 * The recipe a commit carries (`recipeFromRepo`), read the way every node reads it, so that
 * `quorate rebuild` reproduces exactly what nodes build: `.quorate/recipe.json` at that very
 * commit, parsed strictly, its limits capped by the defaults (a commit cannot give itself more
 * time, memory or disk than the defaults), and refused without a build root when the policy
 * says `requireRoot`. A refusal carries the reason a node signs as the commit's (final) failure.
 */
export async function readRepoRecipe (mirror: Pick<GitMirror, 'readFile'>, commit: string, opts: { requireRoot: boolean }): Promise<{ ok: true, spec: RecipeSpec } | { ok: false, reason: string }> {
  let bytes: Uint8Array | undefined
  try {
    bytes = await mirror.readFile(commit, REPO_RECIPE_PATH)
  } catch (err) {
    return { ok: false, reason: `cannot read ${REPO_RECIPE_PATH}: ${(err as Error).message}` }
  }
  if (bytes === undefined) return { ok: false, reason: `the commit has no ${REPO_RECIPE_PATH}, and the policy says the recipe comes from the repository` }
  try {
    const parsed = parseRecipeSpec(parseJsonStrict(Buffer.from(bytes).toString('utf8'), REPO_RECIPE_PATH), REPO_RECIPE_PATH)
    if (opts.requireRoot && parsed.recipe.root === undefined) {
      return { ok: false, reason: `the policy requires a pinned build root for this repository ("requireRoot": true), but ${REPO_RECIPE_PATH} has no "root"; add "root": {"image": "<name>@sha256:<digest>"} to the recipe` }
    }
    const limits = { ...parsed.limits }
    for (const k of Object.keys(limits) as Array<keyof typeof limits>) limits[k] = Math.min(limits[k], DEFAULT_RECIPE_LIMITS[k])
    return { ok: true, spec: { recipe: parsed.recipe, limits } }
  } catch (err) {
    return { ok: false, reason: (err as Error).message }
  }
}
