import { describe, it, expect, afterEach } from 'vitest'
import { buildWorker, type BuildJob } from '@quorate/builder'
import { tempStore, until } from './helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0)) await c() })

const sha = (c: string): string => c.repeat(40)
const job = (c: string, queuedAt: number) => ({ repoId: 'hello', commit: sha(c), ref: 'refs/heads/main', recipeKey: 'r', queuedAt })

describe('build worker over the store\'s queue', () => {
  it('runs due jobs in due order, at most `concurrency` at a time, and leaves a retry alone until its backoff ends', async () => {
    const t = await tempStore()
    const store = t.store
    const now = Date.now()
    await store.enqueueJob(job('1', 3), now - 3000)
    await store.enqueueJob(job('2', 1), now - 1000)
    await store.enqueueJob(job('3', 2), now - 2000)
    await store.enqueueJob(job('4', 4), now - 500)
    // A failed attempt waiting for its backoff:
    const retry = (await store.getJob('hello', sha('4'), 'r'))!
    await store.updateJob({ ...retry, attempts: 1, notBefore: now + 60_000 })
    const ran: string[] = []
    let running = 0
    let most = 0
    const worker = buildWorker({ concurrency: 2, recheckMs: 60_000 }, {
      queue: store,
      run: async (j: BuildJob) => {
        running++
        most = Math.max(most, running)
        ran.push(j.commit[0])
        expect(j.state).toBe('running')
        expect((await store.getJob(j.repoId, j.commit, j.recipeKey))?.state).toBe('running')
        await new Promise(resolve => setTimeout(resolve, 20))
        await store.updateJob({ ...j, state: 'succeeded' })
        running--
      }
    })
    cleanups.push(async () => { await worker.stop(); await t.cleanup() })
    await worker.start()
    await until(() => ran.length === 3, 'three builds')
    await worker.idle()
    expect(ran).toEqual(['1', '3', '2'])
    expect(most).toBe(2)
    expect(await store.nextDueJob(Date.now())).toBeUndefined()
    expect((await store.nextDueJob(now + 61_000))?.commit).toBe(sha('4'))
    expect(await store.jobCounts()).toEqual({ queued: 1, running: 0, succeeded: 3, failed: 0 })
  })

  it('queues again at start what a killed process left running, without counting that attempt', async () => {
    const t = await tempStore()
    await t.store.enqueueJob(job('1', 1))
    const j = (await t.store.getJob('hello', sha('1'), 'r'))!
    await t.store.updateJob({ ...j, state: 'running', attempts: 1 })
    const store = await t.reopen()
    const seen: BuildJob[] = []
    const worker = buildWorker({ concurrency: 1 }, { queue: store, run: async (b) => { seen.push(b); await store.updateJob({ ...b, state: 'succeeded' }) } })
    cleanups.push(async () => { await worker.stop(); await t.cleanup() })
    await worker.start()
    await until(() => seen.length === 1, 'the interrupted job')
    expect(seen[0]).toMatchObject({ commit: sha('1'), attempts: 1, state: 'running' })
  })

  it('on stop, aborts running jobs and waits for them', async () => {
    const t = await tempStore()
    await t.store.enqueueJob(job('1', 1))
    let aborted = false
    let finished = false
    const worker = buildWorker({ concurrency: 1 }, {
      queue: t.store,
      run: async (b, signal) => {
        await new Promise<void>(resolve => signal.addEventListener('abort', () => { aborted = true; resolve() }))
        await t.store.updateJob({ ...b, state: 'queued' })
        finished = true
      }
    })
    cleanups.push(t.cleanup)
    await worker.start()
    await until(() => worker.running() === 1, 'the job to start')
    await worker.stop()
    expect(aborted && finished).toBe(true)
    expect((await t.store.getJob('hello', sha('1'), 'r'))?.state).toBe('queued')
  })
})
