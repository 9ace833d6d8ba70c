import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import {
  isQuorateError, makeFailureStatement, makeProvenanceStatement, parseAttestation, parseEnvelope, sha256Hex,
  type LogPosition, type Policy, type Recipe, type RecipeSpec
} from '@quorate/core'
import type { Store } from '@quorate/store'
import { runBuild, removeTree, isNodeTrouble, readRepoRecipe, type BuildJob, type BuildQueue, type BuildRequest, type BuildUser, type GitMirror } from '@quorate/builder'
import type { EventBus } from './events.js'
import type { Logger } from './logger.js'
import type { NodeMetrics } from './metrics.js'
import type { Outputs } from './outputs.js'
import { routePath, type NodeProblemStatus, type RunningBuildStatus } from './api-routes.js'

/** Default build attempts (a failing build or a runner error) before a job stays failed (node config "buildAttempts"). */
export const MAX_ATTEMPTS = 3

export interface BuildJobsInit {
  sandbox: 'bwrap' | 'none'
  /** Where build work directories go: reachable by the build user, nothing else of the data directory is. */
  buildArea: string
  /** The node's own scratch space (output copies). */
  workDir: string
  /** The user builds run as (an unprivileged host uid when the node is root). */
  user: BuildUser
  /** The fetch phase's network settings (node config `fetchNetwork`). */
  fetchNetwork?: BuildRequest['fetchNetwork']
  /** Where pinned build roots (recipe.root) come from. */
  rootCache?: BuildRequest['rootCache']
  /** npm's cache between fetch phases (node config `fetchCache`). */
  fetchCache?: BuildRequest['fetchCache']
  builderId: string
  /** Demo and tests only: behave like a compromised CI that alters its outputs. */
  tamperOutput?: boolean
  /** Tries of a failing build; the last failure is signed as final. Default MAX_ATTEMPTS. */
  buildAttempts?: number
  /** Backoff before the first retry, doubled for each further one, in ms. Default 30 000. */
  retryBackoffMs?: number
  /** How often a running build logs its phase, elapsed time and log size at info level (default 15 s). */
  progressIntervalMs?: number
}

/** A build this node is running now, as `quorate status` shows it. */
export type RunningBuild = RunningBuildStatus

export interface BuildJobsComponents {
  policy: Policy
  keyid: string
  mirrorOf: (repoId: string) => GitMirror
  store: Pick<Store, 'envelopesForCommit' | 'getJob'>
  queue: Pick<BuildQueue, 'updateJob'>
  /** A job was queued again (an administrator's rebuild): the worker should look now. */
  requeued?: () => void
  /** Signs into the own log (persisted), then publishes; resolves to the envelope id. */
  sign: (repoId: string, make: (log: LogPosition) => Record<string, unknown>) => Promise<string>
  /**
   * Resolves when this node may sign (its own log is held from seq 0, DESIGN.md "A node never
   * forks its own log"); builds run meanwhile, their signatures wait. Default: at once.
   */
  ownLogReady?: () => Promise<void>
  /** Publishes an envelope already in the own log again. */
  republish: (item: { id: string, repoId: string, bytes: Uint8Array }) => void
  outputs: Pick<Outputs, 'keepBuild'>
  metrics: Pick<NodeMetrics, 'builds' | 'buildSeconds' | 'buildPhaseSeconds'>
  stats: { buildsSucceeded: number, buildsFailed: number }
  events: EventBus
  logger: Logger
}

/**
 * Runs one build job for the build worker: resolves the recipe (the policy's, or the commit's
 * `.quorate/recipe.json`), runs the sandboxed build, keeps the outputs, signs the result or the
 * failure, and records the job's new state with the retry backoff. A build key this node already
 * signed (before a crash) is republished, never rebuilt.
 */
export interface BuildJobs {
  run: (job: BuildJob, signal: AbortSignal) => Promise<void>
  /** Jobs waiting on the node's own trouble (disk full, I/O error, sandbox tools missing), with what was wrong. */
  nodeProblems: () => NodeProblem[]
  /** The builds running now, with their phase and elapsed time. */
  running: () => RunningBuild[]
  /**
   * An administrator's "rebuild after a final failure" (DESIGN.md, failure predicate): when this
   * node's newest answer for the commit is a final failure, it signs that attempt again with
   * `final: false` (its organization is open again: the decision turns pending where a quorum is
   * reachable), re-queues the build key, and the next attempt signs attempt n+1 with a fresh retry
   * budget. Refused, with the reason, when the commit is unknown, already built, or not finally failed.
   */
  requestRebuild: (repoId: string, commit: string, by: string) => Promise<RebuildAnswer>
}

/** What an administrator's rebuild request did, or why it was refused. */
export type RebuildAnswer =
  /** `reopenedAttempt` and `envelopeId` (the reopening) are absent when the job had given up without a final failure to reopen. */
  | { ok: true, repoId: string, commit: string, nextAttempt: number, reopenedAttempt?: number, envelopeId?: string }
  | { ok: false, code: 'unknown-commit' | 'already-built' | 'not-final', message: string }

/** What this node's key already signed for a commit. */
interface OwnAnswers {
  build?: { id: string, bytes: Uint8Array }
  /** The highest attempt number signed in a failure. */
  attempts: number
  /** The attempt of the newest final failure an administrator reopened since (0: none): the retry budget counts from here. */
  base: number
  newestFailure?: { id: string, seq: number, attempt: number, final: boolean, reason: string, statement: Record<string, unknown> }
  /** The newest failure's envelope id when it is final (the job is over). */
  final?: string
}

/** A job held back by the node's own trouble: it is not the build's fault, nothing was signed. */
export type NodeProblem = NodeProblemStatus

/** How long a job waits after the node's own trouble before it is tried again (the check is cheap). */
export const NODE_TROUBLE_RETRY_MS = 10_000

/** The shell wrapper a compromised CI would use: run the real build, then slip a change into the output. */
function tamperedRecipe (recipe: Recipe): Recipe {
  const inject = `"$@" || exit $?; for f in $(find "${recipe.output}" -type f | sort); do printf '\\n/* injected by a compromised builder */\\n' >> "$f"; break; done`
  return { ...recipe, build: ['sh', '-c', inject, 'sh', ...recipe.build] }
}

export function buildJobs (init: BuildJobsInit, c: BuildJobsComponents): BuildJobs {
  const { policy, logger, events, metrics, stats, queue } = c
  const maxAttempts = init.buildAttempts ?? MAX_ATTEMPTS
  const backoffMs = init.retryBackoffMs ?? 30_000
  const problems = new Map<string, NodeProblem>()
  const running = new Map<string, { job: BuildJob, phase: string, started: number, phaseStarted: number, logBytes: number }>()

  /**
   * What this key already signed for the job's commit: a build result (never sign another; the
   * envelope is republished) or failures. The newest failure (by log position) decides whether the
   * job is over: a final one ends it, unless an administrator reopened it since (a reopening is the
   * final attempt signed again with `final: false`; see requestRebuild). `attempts` is the highest
   * attempt signed (the next continues after it); `base` is the attempt an administrator reopened
   * after (0 if none), from which the retry budget counts again.
   */
  async function ownAnswers (repoId: string, commit: string): Promise<OwnAnswers> {
    const mine = (await c.store.envelopesForCommit(repoId, commit)).filter(e => e.meta.keyid === c.keyid)
    const build = mine.find(e => e.meta.kind === 'build')
    const failures: Array<NonNullable<OwnAnswers['newestFailure']>> = []
    for (const e of mine.filter(x => x.meta.kind === 'failure')) {
      try {
        const payload = parseEnvelope(JSON.parse(Buffer.from(e.bytes).toString('utf8'))).payloadBytes
        const a = parseAttestation(payload)
        if (a.kind !== 'failure') continue
        failures.push({ id: e.meta.id, seq: e.meta.seq, attempt: a.attempt, final: a.final, reason: a.reason, statement: JSON.parse(Buffer.from(payload).toString('utf8')) as Record<string, unknown> })
      } catch {}
    }
    failures.sort((a, b) => a.seq - b.seq)
    const newest = failures.at(-1)
    const attempts = Math.max(0, ...failures.map(f => f.attempt))
    // Attempts up to a final failure that was reopened since do not count against the retry budget.
    const base = Math.max(0, ...failures.filter(f => f.final && f !== newest).map(f => f.attempt))
    return {
      ...(build !== undefined ? { build: { id: build.meta.id, bytes: build.bytes } } : {}),
      attempts,
      base,
      ...(newest !== undefined ? { newestFailure: newest } : {}),
      ...(newest?.final === true ? { final: newest.id } : {})
    }
  }

  /**
   * Re-checks after the own log is ready: 'settled' when the job is already answered (its state
   * is recorded), else how many failed attempts this key already signed for it and the attempt
   * its retry budget counts from.
   */
  async function checkOwnLog (job: BuildJob): Promise<{ attempts: number, base: number } | 'settled'> {
    const own = await ownAnswers(job.repoId, job.commit)
    if (own.build !== undefined) {
      c.republish({ id: own.build.id, repoId: job.repoId, bytes: own.build.bytes })
      await queue.updateJob({ ...job, state: 'succeeded', envelopeId: own.build.id })
      logger.info('build already signed', { repo: job.repoId, commit: job.commit.slice(0, 12), envelopeId: own.build.id, hint: 'republished, not signed again' })
      return 'settled'
    }
    if (own.final !== undefined) {
      await queue.updateJob({ ...job, state: 'failed', notBefore: Number.MAX_SAFE_INTEGER, envelopeId: own.final })
      return 'settled'
    }
    return { attempts: own.attempts, base: own.base }
  }

  async function run (job: BuildJob, signal: AbortSignal): Promise<void> {
    const repo = policy.repositories.get(job.repoId)
    if (repo === undefined) return
    // An envelope for this build key may exist from before a crash: republish it, never rebuild.
    if (await checkOwnLog(job) === 'settled') return
    let spec: RecipeSpec
    if (repo.recipe !== undefined) {
      spec = repo.recipe
    } else {
      // The commit's own .quorate/recipe.json, read and capped as `quorate rebuild` reads it.
      const read = await readRepoRecipe(c.mirrorOf(job.repoId), job.commit, { requireRoot: repo.requireRoot })
      if (!read.ok) {
        const problem = read.reason
        await c.ownLogReady?.()
        if (signal.aborted) { await queue.updateJob({ ...job, state: 'queued' }); return }
        const signed = await checkOwnLog(job)
        if (signed === 'settled') return
        const attempt = signed.attempts + 1
        // Retrying cannot change the commit's recipe: final at once.
        const id = await c.sign(job.repoId, log => makeFailureStatement({
          repoId: job.repoId, ref: job.ref, commit: job.commit, exitStatus: null, timedOut: false, reason: problem,
          logSha256: sha256Hex(''), fingerprint: { sandbox: init.sandbox }, builderId: init.builderId, finishedOn: new Date().toISOString(), log,
          attempt, final: true
        }))
        await queue.updateJob({ ...job, state: 'failed', notBefore: Number.MAX_SAFE_INTEGER, envelopeId: id, lastError: problem })
        logger.warn('build failed', { repo: job.repoId, commit: job.commit.slice(0, 12), reason: problem, retry: false })
        return
      }
      spec = read.spec
    }
    const executed = init.tamperOutput === true ? tamperedRecipe(spec.recipe) : spec.recipe
    const workDir = join(init.buildArea, randomUUID())
    const outputCopyDir = join(init.workDir, `${randomUUID()}.out`)
    const fileListPath = `${outputCopyDir}.file-list` // written by the hashing, moved into the store by keepBuild
    logger.info('build started', { repo: job.repoId, commit: job.commit.slice(0, 12), ref: job.ref, attempt: job.attempts })
    events.emit({ type: 'build', repoId: job.repoId, commit: job.commit, phase: 'started' })
    const t0 = Date.now()
    const runKey = `${job.repoId}@${job.commit}@${job.recipeKey}`
    const live = { job, phase: 'starting', started: t0, phaseStarted: t0, logBytes: 0 }
    running.set(runKey, live)
    const onProgress = (phase: string, info?: Record<string, unknown>): void => {
      if (info?.tick === true) {
        live.logBytes = typeof info.logBytes === 'number' ? info.logBytes : live.logBytes
        logger.info('build running', { repo: job.repoId, commit: job.commit.slice(0, 12), phase, elapsedS: Math.round((Date.now() - t0) / 1000), phaseElapsedS: Math.round((Date.now() - live.phaseStarted) / 1000), logBytes: live.logBytes })
        return
      }
      live.phase = phase
      live.phaseStarted = Date.now()
      logger.debug('build phase', { repo: job.repoId, commit: job.commit.slice(0, 12), phase })
    }
    try {
      let outcome
      try {
        outcome = await runBuild({
          repoId: job.repoId,
          commit: job.commit,
          ref: job.ref,
          mirror: c.mirrorOf(job.repoId),
          workDir,
          recipe: executed,
          limits: spec.limits,
          sandbox: init.sandbox,
          user: init.user,
          fetchNetwork: init.fetchNetwork,
          ...(init.rootCache !== undefined ? { rootCache: init.rootCache } : {}),
          ...(init.fetchCache !== undefined ? { fetchCache: init.fetchCache } : {}),
          outputCopyDir,
          fileListPath,
          signal,
          onProgress,
          progressIntervalMs: init.progressIntervalMs
        })
      } catch (err) {
        if (signal.aborted) { await queue.updateJob({ ...job, state: 'queued' }); return }
        const message = (err as Error).message
        // The node's own trouble (the disk full, an I/O error, a sandbox tool gone missing, a build
        // root that cannot be pulled or verified) is never the build's fault: the job waits without
        // using one of the build's attempts and runs when the condition clears. A root is retried
        // with backoff (a pull is expensive); the rest every NODE_TROUBLE_RETRY_MS (the check is cheap).
        if (isNodeTrouble(err) || isQuorateError(err, 'SANDBOX_UNAVAILABLE')) {
          const key = `${job.repoId}@${job.commit}`
          const was = problems.get(key)
          const retries = (was?.retries ?? -1) + 1
          problems.set(key, { repoId: job.repoId, commit: job.commit, problem: message, since: was?.since ?? new Date().toISOString(), retries })
          const waitMs = isQuorateError(err, 'ROOT_UNAVAILABLE') ? Math.min(300_000, 5_000 * 2 ** Math.min(retries, 6)) : NODE_TROUBLE_RETRY_MS
          logger.warn('build waits: node trouble', { repo: job.repoId, commit: job.commit.slice(0, 12), problem: message, retryInSeconds: waitMs / 1000 })
          await queue.updateJob({ ...job, state: 'queued', attempts: Math.max(0, job.attempts - 1), notBefore: Date.now() + waitMs, lastError: message })
          return
        }
        logger.error('build could not run', { repo: job.repoId, commit: job.commit.slice(0, 12), error: message })
        await queue.updateJob({
          ...job,
          state: job.attempts < maxAttempts ? 'queued' : 'failed',
          notBefore: Date.now() + backoffMs * 2 ** (job.attempts - 1),
          lastError: message
        })
        return
      }
      if (signal.aborted) { await queue.updateJob({ ...job, state: 'queued' }); return }
      problems.delete(`${job.repoId}@${job.commit}`)
      const recipe = spec.recipe
      // Held until this node holds its own log (a lost data directory): then a build key it
      // already signed is republished, never signed a second time.
      await c.ownLogReady?.()
      if (signal.aborted) { await queue.updateJob({ ...job, state: 'queued' }); return }
      const signed = await checkOwnLog(job)
      if (signed === 'settled') return
      if (outcome.ok) {
        const o = outcome.output
        // The log is kept (whole, or head and tail when it outgrew maxLogBytes) and served at
        // /v1/logs/<sha256>; a whole one is also a blob (/v1/blobs/<sha256>, peers) named in the statement.
        const logKept = outcome.log.complete
        await c.outputs.keepBuild({
          repoId: job.repoId,
          commit: job.commit,
          log: outcome.log,
          output: { narSha256: o.narSha256, fileListSha256: o.fileListSha256, fileListBytes: o.fileListBytes, fileListPath: o.fileListPath, files: o.fileList.files, copyDir: outputCopyDir }
        })
        for (const [phase, ms] of Object.entries(outcome.durationsMs)) {
          if (typeof ms === 'number') metrics.buildPhaseSeconds.observe(ms / 1000, { phase })
        }
        const endpoint = policy.builders.get(policy.keys.get(c.keyid)?.builder ?? '')?.endpoint
        const id = await c.sign(job.repoId, log => makeProvenanceStatement({
          repoId: job.repoId,
          ref: job.ref,
          commit: job.commit,
          recipe,
          narSha256: o.narSha256,
          fileListSha256: o.fileListSha256,
          topLevelFiles: o.topLevelFiles,
          ...(outcome.images !== undefined ? { images: outcome.images.map(i => ({ name: i.name, sha256: i.sha256.replace(/^sha256:/, '') })) } : {}),
          logSha256: outcome.log.sha256,
          fingerprint: outcome.fingerprint as unknown as Record<string, unknown>,
          builderId: init.builderId,
          repositoryUrl: repo.url,
          ...(logKept ? { logUri: `${endpoint?.replace(/\/+$/, '') ?? ''}${routePath('blob', { sha256: outcome.log.sha256 })}` } : {}),
          invocationId: randomUUID(),
          startedOn: outcome.startedOn,
          finishedOn: outcome.finishedOn,
          log
        }))
        stats.buildsSucceeded++
        metrics.builds.inc({ outcome: 'success' })
        metrics.buildSeconds.observe((Date.now() - t0) / 1000, { outcome: 'success' })
        await queue.updateJob({ ...job, state: 'succeeded', envelopeId: id })
        logger.info('build succeeded', { repo: job.repoId, commit: job.commit.slice(0, 12), narSha256: o.narSha256, files: o.fileCount, ms: Date.now() - t0, ...Object.fromEntries(Object.entries(outcome.durationsMs).map(([k, v]) => [k, Math.round(v as number)])) })
        events.emit({ type: 'build', repoId: job.repoId, commit: job.commit, phase: 'finished', ok: true, durationMs: Date.now() - t0 })
      } else {
        await c.outputs.keepBuild({ repoId: job.repoId, commit: job.commit, log: outcome.log })
        const attempt = signed.attempts + 1
        // After an administrator reopened a final failure, the rebuild has the whole budget again.
        const retry = attempt < signed.base + maxAttempts
        const id = await c.sign(job.repoId, log => makeFailureStatement({
          repoId: job.repoId,
          ref: job.ref,
          commit: job.commit,
          recipe,
          exitStatus: outcome.exitStatus,
          timedOut: outcome.timedOut,
          reason: outcome.reason,
          logSha256: outcome.log.sha256,
          fingerprint: outcome.fingerprint as unknown as Record<string, unknown>,
          builderId: init.builderId,
          finishedOn: outcome.finishedOn,
          log,
          attempt,
          final: !retry
        }))
        stats.buildsFailed++
        metrics.builds.inc({ outcome: 'failure' })
        metrics.buildSeconds.observe((Date.now() - t0) / 1000, { outcome: 'failure' })
        await queue.updateJob({ ...job, state: retry ? 'queued' : 'failed', notBefore: retry ? Date.now() + backoffMs * 2 ** (attempt - 1) : Number.MAX_SAFE_INTEGER, envelopeId: id, lastError: outcome.reason })
        logger.warn('build failed', { repo: job.repoId, commit: job.commit.slice(0, 12), reason: outcome.reason, exitStatus: outcome.exitStatus, timedOut: outcome.timedOut, attempt, final: !retry, retry, logTail: outcome.log.tail.slice(-400) })
        events.emit({ type: 'build', repoId: job.repoId, commit: job.commit, phase: 'finished', ok: false, durationMs: Date.now() - t0 })
      }
    } finally {
      running.delete(runKey)
      // a build dir left behind (removal failed) is the node's disk, not the build's answer: say so and go on
      for (const dir of [workDir, outputCopyDir]) await removeTree(dir).catch(err => logger.warn('build directory not removed', { dir, error: (err as Error).message }))
      await rm(fileListPath, { force: true })
    }
  }

  let rebuilding: Promise<unknown> = Promise.resolve()
  function requestRebuild (repoId: string, commit: string, by: string): Promise<RebuildAnswer> {
    // One at a time: two requests racing must not both sign a reopening.
    const next = rebuilding.then(async () => await reopen(repoId, commit, by))
    rebuilding = next.catch(() => {})
    return next
  }

  async function reopen (repoId: string, commit: string, by: string): Promise<RebuildAnswer> {
    const repo = policy.repositories.get(repoId)
    const key = `${repoId}@${commit}`
    if (repo === undefined) return { ok: false, code: 'unknown-commit', message: `unknown repository "${repoId}": it is not in this node's policy` }
    const recipeKey = repo.recipeDigest ?? 'repo'
    const job = await c.store.getJob(repoId, commit, recipeKey)
    const own = await ownAnswers(repoId, commit)
    if (job === undefined && own.build === undefined && own.newestFailure === undefined) {
      return { ok: false, code: 'unknown-commit', message: `this node never built ${key}: nothing to rebuild (is the commit on a watched branch, and is its id complete?)` }
    }
    if (own.build !== undefined) {
      return { ok: false, code: 'already-built', message: `${key} was built successfully by this node (envelope ${own.build.id}); a success is never rebuilt` }
    }
    if (job?.state === 'queued' || job?.state === 'running') {
      return { ok: false, code: 'not-final', message: `${key} has no final failure to rebuild after: its build is ${job.state}${job.attempts > 0 ? ` (attempt ${job.attempts} of this round)` : ''}, and the node builds it by itself` }
    }
    const f = own.newestFailure
    let envelopeId: string | undefined
    if (f?.final === true) {
      // The final attempt signed again as not final: "attempt n failed, and this builder will
      // retry". Everyone's decision sees the organization open again; the next attempt is n+1.
      const predicate = f.statement.predicate as Record<string, unknown>
      const reason = `rebuild requested by an administrator after the final failure of attempt ${f.attempt}: ${f.reason}`
      envelopeId = await c.sign(repoId, log => ({ ...f.statement, predicate: { ...predicate, final: false, reason: reason.slice(0, 2000), quorate_log: log } }))
    } else if (job?.state !== 'failed') {
      return { ok: false, code: 'not-final', message: `${key} has no final failure to rebuild after: ${f !== undefined ? `its newest failure (attempt ${f.attempt}) is not final, and the node retries it by itself` : 'it has not failed on this node'}` }
    }
    // Otherwise the job gave up without a final failure to reopen (the build could not run, or the
    // node stopped right after signing a reopening): queued again, nothing new to sign.
    const { lastError: _e, envelopeId: _id, ...rest } = job ?? { repoId, commit, ref: String((f?.statement.predicate as Record<string, unknown> | undefined)?.ref ?? 'refs/heads/main'), recipeKey, queuedAt: Date.now(), state: 'failed' as const, attempts: 0, notBefore: 0 }
    await queue.updateJob({ ...rest, state: 'queued', attempts: 0, notBefore: Date.now() })
    const nextAttempt = own.attempts + 1
    logger.warn('admin rebuild requested', { repo: repoId, commit: commit.slice(0, 12), by, ...(f?.final === true ? { reopenedAttempt: f.attempt, envelopeId } : { requeued: 'no final failure to reopen' }), nextAttempt, ...(f !== undefined ? { previousReason: f.reason } : {}) })
    events.emit({ type: 'build', repoId, commit, phase: 'queued' })
    c.requeued?.()
    return { ok: true, repoId, commit, nextAttempt, ...(envelopeId !== undefined ? { reopenedAttempt: f!.attempt, envelopeId } : {}) }
  }

  return {
    run,
    requestRebuild,
    nodeProblems: () => [...problems.values()],
    running: () => {
      const now = Date.now()
      return [...running.values()].map(r => ({
        repoId: r.job.repoId,
        commit: r.job.commit,
        ref: r.job.ref,
        attempt: r.job.attempts,
        phase: r.phase,
        startedAt: new Date(r.started).toISOString(),
        elapsedSeconds: Math.round((now - r.started) / 1000),
        phaseElapsedSeconds: Math.round((now - r.phaseStarted) / 1000),
        logBytes: r.logBytes
      }))
    }
  }
}
