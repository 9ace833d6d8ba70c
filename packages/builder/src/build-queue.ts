import type { BuildJob } from '@quorate/core'

export type { BuildJob, BuildJobState } from '@quorate/core'

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
