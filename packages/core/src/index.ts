/**
 * @quorate/core: pure formats and rules (canonical JSON, keys, DSSE, statements, policy, quorum).
 *
 * @example
 * import { canonicalize } from '@quorate/core'
 * canonicalize({ b: 1, a: [true, null] }) // '{"a":[true,null],"b":1}'
 */
export { QuorateError, isQuorateError } from './errors.js'
export type { QuorateErrorCode } from './errors.js'
export { canonicalize, canonicalBytes, parseJsonStrict } from './canonical-json.js'
export { parseRecipeSpec, DEFAULT_RECIPE_LIMITS } from './recipe.js'
export type { Recipe, RecipeLimits, RecipeSpec } from './recipe.js'
