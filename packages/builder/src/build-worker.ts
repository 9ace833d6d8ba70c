import type { BuildJob, BuildQueue } from './build-queue.js'

export interface BuildWorkerInit {
  /** Builds run at the same time. */
  concurrency: number
  /** How often due jobs (retries whose backoff ended) are looked for without a kick, in ms. Default 5000. */
  recheckMs?: number
}

export interface BuildWorkerComponents {
  queue: Pick<BuildQueue, 'nextDueJob' | 'updateJob' | 'requeueInterrupted'>
  /**
   * Runs one claimed job (already marked running, attempts counted) and records its outcome
   * in the queue. `signal` aborts when the worker stops: the job should then go back to queued.
   */
  run: (job: BuildJob, signal: AbortSignal) => Promise<void>
  log?: (level: 'error', event: string, fields: Record<string, unknown>) => void
}

/**
 * The build queue loop: claims the job that is due first, up to `concurrency` at a time, and
 * runs it. `kick` after queueing; a timer picks up retries whose backoff ended. At start, jobs
 * a killed process left running are queued again (the runner must not sign a build twice).
 */
export interface BuildWorker {
  kick: () => void
  /** Jobs running now. */
  running: () => number
  /** Resolves when no job is running or being claimed (tests wait on this rather than on time). */
  idle: () => Promise<void>
  start: () => Promise<void>
  stop: () => Promise<void>
}

export function buildWorker (init: BuildWorkerInit, c: BuildWorkerComponents): BuildWorker {
  let running = 0
  let claiming = false
  let stopping = true
  let timer: NodeJS.Timeout | undefined
  let abort = new AbortController()
  const inFlight = new Set<Promise<void>>()
  const idleWaiters: Array<() => void> = []

  function settleIdle (): void {
    if (running > 0 || claiming) return
    for (const w of idleWaiters.splice(0)) w()
  }

  let kickedWhileClaiming = false
  function kick (): void {
    if (stopping) return
    if (claiming) { kickedWhileClaiming = true; return }
    claiming = true
    void (async () => {
      try {
        while (running < init.concurrency && !stopping) {
          kickedWhileClaiming = false
          const next = await c.queue.nextDueJob(Date.now())
          if (stopping) return
          if (next === undefined) {
            if (kickedWhileClaiming) continue
            return
          }
          const job: BuildJob = { ...next, state: 'running', attempts: next.attempts + 1 }
          await c.queue.updateJob(job)
          running++
          const p = c.run(job, abort.signal)
            .catch(err => c.log?.('error', 'build job crashed', { repo: job.repoId, commit: job.commit, error: (err as Error).message }))
            .finally(() => { running--; inFlight.delete(p); kick(); settleIdle() })
          inFlight.add(p)
        }
      } catch (err) {
        c.log?.('error', 'build queue failed', { error: (err as Error).message })
      } finally {
        claiming = false
        settleIdle()
      }
    })()
  }

  return {
    kick,
    running: () => running,
    async idle () {
      if (running === 0 && !claiming) return
      await new Promise<void>(resolve => idleWaiters.push(resolve))
    },
    async start () {
      stopping = false
      abort = new AbortController()
      await c.queue.requeueInterrupted()
      timer = setInterval(kick, init.recheckMs ?? 5000)
      kick()
    },
    async stop () {
      stopping = true
      clearInterval(timer)
      abort.abort()
      while (inFlight.size > 0) await Promise.all([...inFlight])
    }
  }
}
