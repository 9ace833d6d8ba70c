/**
 * A build job as the build queue keeps it: declared here, in core, because the builder's queue
 * loop reads it and the store persists it (neither imports the other).
 */
/** The state of one build job. */
export type BuildJobState = 'queued' | 'running' | 'succeeded' | 'failed'

/** A build job, keyed by build key (repoId, commit, recipe). */
export interface BuildJob {
  repoId: string
  commit: string
  ref: string
  /** Pinned recipe digest, or "repo" when the recipe is read from the commit. */
  recipeKey: string
  state: BuildJobState
  attempts: number
  /** Not run before this time (ms since the epoch): the retry backoff. */
  notBefore: number
  queuedAt: number
  envelopeId?: string
  lastError?: string
}
