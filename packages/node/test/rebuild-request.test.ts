import { describe, it, expect, afterEach } from 'vitest'
import { makeFailureStatement, parseAttestation, parseEnvelope, parseJsonStrict, type FailureAttestation } from '@quorate/core'
import { buildJobs } from '../src/build-jobs.js'
import { ownLog } from '../src/own-log.js'
import { EventBus } from '../src/events.js'
import { createNodeMetrics } from '../src/metrics.js'
import { builder, policyFor, buildStatement, tempStore, memoryLogger, RECIPE, COMMIT, OTHER_COMMIT, H } from './helpers.js'

const alpha = builder('alpha', 'a', 1)
const policy = policyFor([alpha, builder('beta', 'b', 2)])
const recipeKey = policy.repositories.get('hello')!.recipeDigest!
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0)) await c() })

async function setup (): Promise<{ t: Awaited<ReturnType<typeof tempStore>>, jobs: ReturnType<typeof buildJobs>, log: ReturnType<typeof ownLog>, logger: ReturnType<typeof memoryLogger>, kicks: () => number }> {
  const t = await tempStore()
  cleanups.push(t.cleanup)
  const log = ownLog({ store: t.store, key: alpha.key, policy })
  const logger = memoryLogger()
  let kicks = 0
  const jobs = buildJobs({ sandbox: 'none', buildArea: t.dir, workDir: t.dir, user: { uid: process.getuid!(), gid: process.getgid!(), drop: false }, builderId: 'https://quorate.dev/builders/a/alpha' }, {
    policy,
    keyid: alpha.key.keyid,
    mirrorOf: () => { throw new Error('no build runs in this test') },
    store: t.store,
    queue: t.store,
    requeued: () => { kicks++ },
    sign: async (repoId, make) => (await log.append(repoId, make)).id,
    republish: () => {},
    outputs: { keepBuild: async () => {} },
    metrics: createNodeMetrics(),
    stats: { buildsSucceeded: 0, buildsFailed: 0 },
    events: new EventBus(),
    logger
  })
  return { t, jobs, log, logger, kicks: () => kicks }
}

const failure = (attempt: number, final: boolean) => (log: { seq: number, prev: string | null }) => makeFailureStatement({
  repoId: 'hello', ref: 'refs/heads/main', commit: COMMIT, recipe: RECIPE, exitStatus: 22, timedOut: false, reason: 'the mirror answered 503',
  logSha256: H('1'), fingerprint: { sandbox: 'none' }, builderId: 'https://quorate.dev/builders/a/alpha', finishedOn: '2026-01-01T00:00:00Z', log, attempt, final
})

const newJob = (state: 'queued' | 'failed', attempts = 1) => ({ repoId: 'hello', commit: COMMIT, ref: 'refs/heads/main', recipeKey, queuedAt: 1, state, attempts, notBefore: state === 'failed' ? Number.MAX_SAFE_INTEGER : 0 })

async function ownFailures (t: Awaited<ReturnType<typeof tempStore>>): Promise<FailureAttestation[]> {
  const mine = (await t.store.envelopesForCommit('hello', COMMIT)).filter(e => e.meta.kind === 'failure').sort((a, b) => a.meta.seq - b.meta.seq)
  return mine.map(e => parseAttestation(parseEnvelope(parseJsonStrict(Buffer.from(e.bytes).toString('utf8'), 'test')).payloadBytes) as FailureAttestation)
}

describe('an administrator\'s rebuild request', () => {
  it('reopens a final failure: signs that attempt again as not final, queues the job with a fresh budget, and refuses a second request while it is queued', async () => {
    const { t, jobs, log, logger, kicks } = await setup()
    await log.append('hello', failure(1, true))
    await t.store.updateJob(newJob('failed'))
    const answer = await jobs.requestRebuild('hello', COMMIT, '127.0.0.1')
    expect(answer).toMatchObject({ ok: true, reopenedAttempt: 1, nextAttempt: 2 })
    const [first, reopening] = await ownFailures(t)
    expect(first).toMatchObject({ attempt: 1, final: true })
    expect(reopening).toMatchObject({ attempt: 1, final: false, recipeDigest: first.recipeDigest, exitStatus: 22, reason: 'rebuild requested by an administrator after the final failure of attempt 1: the mirror answered 503' })
    expect(await t.store.getJob('hello', COMMIT, recipeKey)).toMatchObject({ state: 'queued', attempts: 0 })
    expect(kicks()).toBe(1)
    expect(logger.lines.find(l => l.event === 'admin rebuild requested')).toMatchObject({ by: '127.0.0.1', reopenedAttempt: 1, nextAttempt: 2 })
    expect(await jobs.requestRebuild('hello', COMMIT, '127.0.0.1')).toMatchObject({ ok: false, code: 'not-final', message: expect.stringMatching(/has no final failure to rebuild after: its build is queued/) })
    expect(await ownFailures(t)).toHaveLength(2)
  })

  it('queues again without signing when the node stopped right after a reopening, or a job gave up without a final failure', async () => {
    const { t, jobs, log } = await setup()
    // The reopening was signed, then the node stopped before the job was queued again.
    await log.append('hello', failure(1, true))
    await log.append('hello', s => ({ ...failure(1, false)(s) }))
    await t.store.updateJob(newJob('failed'))
    expect(await jobs.requestRebuild('hello', COMMIT, 'x')).toEqual({ ok: true, repoId: 'hello', commit: COMMIT, nextAttempt: 2 })
    expect(await ownFailures(t)).toHaveLength(2)
    expect(await t.store.getJob('hello', COMMIT, recipeKey)).toMatchObject({ state: 'queued' })
    // A build that could not run (no signed failure at all) and stopped after its attempts.
    await t.store.updateJob({ ...newJob('failed', 3), commit: OTHER_COMMIT })
    expect(await jobs.requestRebuild('hello', OTHER_COMMIT, 'x')).toEqual({ ok: true, repoId: 'hello', commit: OTHER_COMMIT, nextAttempt: 1 })
  })

  it('refuses an unknown repository or commit, a commit built successfully, and one still retrying by itself', async () => {
    const { t, jobs, log } = await setup()
    expect(await jobs.requestRebuild('nope', COMMIT, 'x')).toMatchObject({ ok: false, code: 'unknown-commit', message: 'unknown repository "nope": it is not in this node\'s policy' })
    expect(await jobs.requestRebuild('hello', COMMIT, 'x')).toMatchObject({ ok: false, code: 'unknown-commit', message: expect.stringMatching(/this node never built hello@a{40}/) })
    await log.append('hello', failure(1, false))
    expect(await jobs.requestRebuild('hello', COMMIT, 'x')).toMatchObject({ ok: false, code: 'not-final', message: expect.stringMatching(/its newest failure \(attempt 1\) is not final, and the node retries it by itself/) })
    await log.append('hello', s => buildStatement('1', s))
    expect(await jobs.requestRebuild('hello', COMMIT, 'x')).toMatchObject({ ok: false, code: 'already-built', message: expect.stringMatching(/was built successfully by this node .*a success is never rebuilt/) })
    expect(await ownFailures(t)).toHaveLength(1)
  })
})
