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

/** A job as the watcher queues it. */
export type NewBuildJob = Omit<BuildJob, 'state' | 'attempts' | 'notBefore'>

/**
 * The persistent build queue the watcher and the build worker use. The builder declares it and
 * the store implements it (like network's SyncSource), so a queue survives restarts.
 */
export interface BuildQueue {
  /** Queues a build unless its build key is already known. True when newly queued. */
  enqueueJob: (job: NewBuildJob, now?: number) => Promise<boolean>
  /** The queued job that is due first (lowest notBefore, then queuedAt) with notBefore ≤ now, from an index: no scan of all jobs. */
  nextDueJob: (now: number) => Promise<BuildJob | undefined>
  /** Writes a job's new state (durably). */
  updateJob: (job: BuildJob) => Promise<void>
  /** Jobs left `running` by a process that died are queued again; returns how many. */
  requeueInterrupted: () => Promise<number>
}

/** Where the watcher remembers the last commit it saw per ref (the store's node state). */
export interface RefMemory {
  seenRefs: (repoId: string) => Promise<Record<string, string>>
  rememberRefs: (repoId: string, refs: Record<string, string>) => Promise<void>
}
