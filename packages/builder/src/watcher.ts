import type { GitMirror, MissingBranches, RefPatterns } from './git-mirror.js'
import type { BuildQueue, RefMemory } from './build-queue.js'

/** One repository to watch. */
export interface WatchedRepository extends RefPatterns {
  id: string
  /** Pinned recipe digest, or "repo" when the recipe comes from the commit: part of the build key. */
  recipeKey: string
}

export interface WatcherInit {
  repositories: WatchedRepository[]
  /** Commits queued when a ref is first seen. */
  backfill: number
  /** Poll period in ms (0: only when asked with `pollNow`). */
  pollIntervalMs: number
}

/** A ref moved: the watcher saw `ref` go from `previous` (null when new) to `commit`, bringing `commits` (oldest first, as queued). */
export interface RefMove { repoId: string, ref: string, commit: string, previous: string | null, commits: string[] }

export interface WatcherComponents {
  mirrorOf: (repoId: string) => GitMirror
  queue: Pick<BuildQueue, 'enqueueJob'>
  refs: RefMemory
  /** Called for each ref move, after its commits are queued and before it is remembered (the node signs an observation here). */
  onRefMoved?: (move: RefMove) => Promise<void>
  /** Called after a poll queued new jobs. */
  onQueued?: () => void
  log?: (level: 'debug' | 'info' | 'warn' | 'error', event: string, fields: Record<string, unknown>) => void
  /** How often a first clone reports its progress (default 15 s). */
  progressIntervalMs?: number
}

/** What keeps the watcher from seeing a repository's commits (shown in the node's status). */
export interface WatchProblem {
  repoId: string
  /** Why, in words for the operator. */
  problem: string
  /** Watched branch patterns that match no branch of the remote. */
  missingBranches?: string[]
  /** The remote's branches, when some watched ones are missing. */
  remoteBranches?: string[]
}

/**
 * Git polling: fetches each repository's mirror, resolves the watched branches and tags, and
 * queues a build job for every new commit (a backfill on first sight, a force-push's new tip).
 * One poll at a time; a request during a poll (a webhook for a push it may have missed) runs
 * one more poll right after it.
 */
export interface Watcher {
  pollNow: (repoId?: string) => Promise<void>
  /** Poll rounds finished since start (each repository fetched once, or its error recorded). */
  polls: () => number
  /** Repositories the last poll could not fetch, or whose watched branches the remote lacks. */
  problems: () => WatchProblem[]
  start: () => void
  stop: () => Promise<void>
}

export function watcher (init: WatcherInit, c: WatcherComponents): Watcher {
  const log = c.log ?? (() => {})
  const pollErrors = new Map<string, string>()
  const missing = new Map<string, WatchProblem>()
  let polling: Promise<void> | undefined
  let again: Promise<void> | undefined
  let timer: NodeJS.Timeout | undefined
  let stopping = false
  let polls = 0

  async function pollRepo (repo: WatchedRepository): Promise<number> {
    const mirror = c.mirrorOf(repo.id)
    const t0 = Date.now()
    await mirror.fetch({
      progressIntervalMs: c.progressIntervalMs,
      onCloneProgress: p => log('info', 'cloning repository', { repo: repo.id, url: p.url, elapsedS: Math.round(p.elapsedMs / 1000), progress: p.line })
    })
    // One listing of the mirror's refs per poll serves both the watched refs and the missing-branch check.
    const { refs, missing: found } = await mirror.resolveWatchedRefs({ branches: repo.branches, tags: repo.tags })
    checkBranches(repo, found)
    const seen = await c.refs.seenRefs(repo.id)
    let queued = 0
    for (const [ref, commit] of [...refs].sort(([a], [b]) => a < b ? -1 : 1)) {
      const old = seen[ref]
      if (old === commit) continue
      let commits: string[]
      try {
        commits = await mirror.commitsSince(commit, old ?? null, old === undefined ? init.backfill : 1000)
      } catch {
        commits = await mirror.commitsSince(commit, null, init.backfill) // force-push: old head gone
      }
      for (const sha of commits) {
        if (await c.queue.enqueueJob({ repoId: repo.id, commit: sha, ref, recipeKey: repo.recipeKey, queuedAt: Date.now() })) queued++
      }
      log('info', 'ref moved', { repo: repo.id, ref, from: old?.slice(0, 12) ?? '(new)', to: commit.slice(0, 12), newCommits: commits.length })
      await c.onRefMoved?.({ repoId: repo.id, ref, commit, previous: old ?? null, commits })
      seen[ref] = commit
      await c.refs.rememberRefs(repo.id, seen)
    }
    log('debug', 'polled', { repo: repo.id, ms: Date.now() - t0, queued })
    if (queued > 0) c.onQueued?.()
    return queued
  }

  /** A watched branch the remote does not have would be polled silently forever: say so, naming the branches it has. */
  function checkBranches (repo: WatchedRepository, found: MissingBranches): void {
    if (found.missing.length === 0) {
      if (missing.delete(repo.id)) log('info', 'watched branches found', { repo: repo.id })
      return
    }
    const has = found.branches.length === 0 ? 'no branches at all' : `only ${found.branches.slice(0, 20).join(', ')}${found.branches.length > 20 ? ` and ${found.branches.length - 20} more` : ''}`
    const problem = `the remote has no branch matching ${found.missing.map(b => `"${b}"`).join(', ')} (it has ${has}); fix "branches" for ${repo.id} in the policy`
    if (missing.get(repo.id)?.problem !== problem) log('warn', 'watched branch missing', { repo: repo.id, missing: found.missing.join(','), remoteBranches: found.branches.slice(0, 50).join(','), problem })
    missing.set(repo.id, { repoId: repo.id, problem, missingBranches: found.missing, remoteBranches: found.branches })
  }

  async function pollAll (only?: string): Promise<void> {
    for (const repo of init.repositories) {
      if (only !== undefined && repo.id !== only) continue
      if (stopping) break
      try {
        await pollRepo(repo)
        if (pollErrors.has(repo.id)) log('info', 'repository reachable again', { repo: repo.id })
        pollErrors.delete(repo.id)
      } catch (err) {
        const message = (err as Error).message
        if (pollErrors.get(repo.id) !== message) log('error', 'poll failed', { repo: repo.id, error: message })
        pollErrors.set(repo.id, message)
      }
    }
    polls++
  }

  function pollNow (only?: string): Promise<void> {
    if (polling === undefined) {
      polling = pollAll(only).finally(() => { polling = undefined })
      return polling
    }
    again ??= polling.then(async () => { again = undefined; await pollNow(only) })
    return again
  }

  return {
    pollNow,
    polls: () => polls,
    problems: () => [
      ...[...pollErrors].map(([repoId, problem]) => ({ repoId, problem: `cannot fetch: ${problem}` })),
      ...[...missing.values()].filter(m => !pollErrors.has(m.repoId))
    ],
    start () {
      stopping = false
      if (init.pollIntervalMs > 0) timer = setInterval(() => { if (!stopping) void pollNow() }, init.pollIntervalMs)
      void pollNow()
    },
    async stop () {
      stopping = true
      clearInterval(timer)
      await polling?.catch(() => {})
    }
  }
}
