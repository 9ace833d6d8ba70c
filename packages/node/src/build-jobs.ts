import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import {
  makeFailureStatement, makeProvenanceStatement, parseRecipeSpec, parseJsonStrict, sha256Hex, DEFAULT_RECIPE_LIMITS,
  type LogPosition, type Policy, type Recipe, type RecipeSpec
} from '@quorate/core'
import type { Store } from '@quorate/store'
import { runBuild, parseImageSpec, type BuildJob, type BuildQueue, type BuildRequest, type BuildUser, type GitMirror } from '@quorate/builder'
import type { EventBus } from './events.js'
import type { Logger } from './logger.js'
import type { NodeMetrics } from './metrics.js'
import type { Outputs } from './outputs.js'

/** Build attempts (a failing build or a runner error) before a job stays failed. */
export const MAX_ATTEMPTS = 3
/** The signed failure reason when the policy requires a build root and the commit's recipe has none. */
const REQUIRE_ROOT_REASON = 'the policy requires a pinned build root for this repository ("requireRoot": true), but .quorate/recipe.json has no "root"; add "root": {"image": "<name>@sha256:<digest>"} to the recipe'

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
  builderId: string
  /** Demo and tests only: behave like a compromised CI that alters its outputs. */
  tamperOutput?: boolean
}

export interface BuildJobsComponents {
  policy: Policy
  keyid: string
  mirrorOf: (repoId: string) => GitMirror
  store: Pick<Store, 'envelopesForCommit'>
  queue: Pick<BuildQueue, 'updateJob'>
  /** Signs into the own log (persisted), then publishes; resolves to the envelope id. */
  sign: (repoId: string, make: (log: LogPosition) => Record<string, unknown>) => Promise<string>
  /** Publishes an envelope already in the own log again. */
  republish: (item: { id: string, repoId: string, bytes: Uint8Array }) => void
  outputs: Pick<Outputs, 'keep'>
  metrics: Pick<NodeMetrics, 'builds' | 'buildSeconds'>
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
}

/** The shell wrapper a compromised CI would use: run the real build, then slip a change into the output. */
function tamperedRecipe (recipe: Recipe): Recipe {
  const inject = `"$@" || exit $?; for f in $(find "${recipe.output}" -type f | sort); do printf '\\n/* injected by a compromised builder */\\n' >> "$f"; break; done`
  return { ...recipe, build: ['sh', '-c', inject, 'sh', ...recipe.build] }
}

export function buildJobs (init: BuildJobsInit, c: BuildJobsComponents): BuildJobs {
  const { policy, logger, events, metrics, stats, queue } = c

  /** recipeFromRepo: the recipe is .quorate/recipe.json at this very commit; its limits are capped by the node's defaults. */
  async function recipeFromCommit (job: BuildJob, requireRoot: boolean): Promise<string | RecipeSpec> {
    let bytes: Uint8Array | undefined
    try {
      bytes = await c.mirrorOf(job.repoId).readFile(job.commit, '.quorate/recipe.json')
    } catch (err) {
      return `cannot read .quorate/recipe.json: ${(err as Error).message}`
    }
    if (bytes === undefined) return 'the commit has no .quorate/recipe.json, and the policy says the recipe comes from the repository'
    try {
      const parsed = parseRecipeSpec(parseJsonStrict(Buffer.from(bytes).toString('utf8'), '.quorate/recipe.json'), '.quorate/recipe.json')
      if (parsed.recipe.image !== undefined) parseImageSpec(parsed.recipe.image, '.quorate/recipe.json: image')
      if (requireRoot && parsed.recipe.root === undefined) return REQUIRE_ROOT_REASON
      const limits = { ...parsed.limits }
      for (const k of Object.keys(limits) as Array<keyof typeof limits>) limits[k] = Math.min(limits[k], DEFAULT_RECIPE_LIMITS[k])
      return { recipe: parsed.recipe, limits }
    } catch (err) {
      return (err as Error).message
    }
  }

  async function run (job: BuildJob, signal: AbortSignal): Promise<void> {
    const repo = policy.repositories.get(job.repoId)
    if (repo === undefined) return
    // An envelope for this build key may exist from before a crash: republish it, never rebuild.
    const own = (await c.store.envelopesForCommit(job.repoId, job.commit)).find(e => e.meta.keyid === c.keyid && e.meta.kind === 'build')
    if (own !== undefined) {
      c.republish({ id: own.meta.id, repoId: job.repoId, bytes: own.bytes })
      await queue.updateJob({ ...job, state: 'succeeded', envelopeId: own.meta.id })
      return
    }
    let spec: RecipeSpec
    if (repo.recipe !== undefined) {
      spec = repo.recipe
    } else {
      const problem = await recipeFromCommit(job, repo.requireRoot)
      if (typeof problem === 'string') {
        const id = await c.sign(job.repoId, log => makeFailureStatement({
          repoId: job.repoId, ref: job.ref, commit: job.commit, exitStatus: null, timedOut: false, reason: problem,
          logSha256: sha256Hex(''), fingerprint: { sandbox: init.sandbox }, builderId: init.builderId, finishedOn: new Date().toISOString(), log
        }))
        await queue.updateJob({ ...job, state: 'failed', notBefore: Number.MAX_SAFE_INTEGER, envelopeId: id, lastError: problem })
        logger.warn('build failed', { repo: job.repoId, commit: job.commit.slice(0, 12), reason: problem, retry: false })
        return
      }
      spec = problem
    }
    const executed = init.tamperOutput === true ? tamperedRecipe(spec.recipe) : spec.recipe
    const workDir = join(init.buildArea, randomUUID())
    const outputCopyDir = join(init.workDir, `${randomUUID()}.out`)
    logger.info('build started', { repo: job.repoId, commit: job.commit.slice(0, 12), ref: job.ref, attempt: job.attempts })
    events.emit({ type: 'build', repoId: job.repoId, commit: job.commit, phase: 'started' })
    const t0 = Date.now()
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
          outputCopyDir,
          signal,
          onProgress: (phase) => logger.debug('build phase', { repo: job.repoId, commit: job.commit.slice(0, 12), phase })
        })
      } catch (err) {
        if (signal.aborted) { await queue.updateJob({ ...job, state: 'queued' }); return }
        const message = (err as Error).message
        logger.error('build could not run', { repo: job.repoId, commit: job.commit.slice(0, 12), error: message })
        await queue.updateJob({ ...job, state: job.attempts >= MAX_ATTEMPTS ? 'failed' : 'queued', notBefore: Date.now() + 30_000 * 2 ** job.attempts, lastError: message })
        return
      }
      if (signal.aborted) { await queue.updateJob({ ...job, state: 'queued' }); return }
      const recipe = spec.recipe
      if (outcome.ok) {
        const o = outcome.output
        await c.outputs.keep({ fileListSha256: o.fileListSha256, fileListBytes: o.fileListBytes, files: o.fileList.files, copyDir: outputCopyDir })
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
          log
        }))
        stats.buildsFailed++
        metrics.builds.inc({ outcome: 'failure' })
        metrics.buildSeconds.observe((Date.now() - t0) / 1000, { outcome: 'failure' })
        const retry = job.attempts < MAX_ATTEMPTS
        await queue.updateJob({ ...job, state: retry ? 'queued' : 'failed', notBefore: Date.now() + 30_000 * 2 ** (job.attempts - 1), envelopeId: id, lastError: outcome.reason })
        logger.warn('build failed', { repo: job.repoId, commit: job.commit.slice(0, 12), reason: outcome.reason, exitStatus: outcome.exitStatus, timedOut: outcome.timedOut, retry, logTail: outcome.log.tail.slice(-400) })
        events.emit({ type: 'build', repoId: job.repoId, commit: job.commit, phase: 'finished', ok: false, durationMs: Date.now() - t0 })
      }
    } finally {
      rmSync(workDir, { recursive: true, force: true })
      rmSync(outputCopyDir, { recursive: true, force: true })
    }
  }

  return { run }
}
