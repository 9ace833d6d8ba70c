import { describe, it, expect, afterEach } from 'vitest'
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { GitMirror, watcher, type RefMove } from '@quorate/builder'
import { tempStore } from './helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0)) await c() })

let tick = 0
function git (cwd: string, args: string[]): string {
  const date = `@${1_700_000_000 + (++tick) * 60} +0000`
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@x', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@x', GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date }
  }).trim()
}
function commit (repo: string, file: string, text: string): string {
  writeFileSync(join(repo, file), text)
  git(repo, ['add', '-A'])
  git(repo, ['commit', '-q', '-m', text])
  return git(repo, ['rev-parse', 'HEAD'])
}

/** A temp store, and an empty git repository in its directory whose first branch is `branch`. */
async function storeAndRepo (branch = 'main') {
  const t = await tempStore()
  cleanups.push(t.cleanup)
  const repo = join(t.dir, 'repo')
  mkdirSync(repo)
  git(repo, ['init', '-q', '-b', branch])
  return { t, repo }
}

describe('watcher over a real git repository and the store\'s queue', () => {
  it('queues the backfill on first sight, then each new commit once, remembers refs across restarts, and reports every move', async () => {
    const { t, repo } = await storeAndRepo()
    const c1 = commit(repo, 'a', 'one')
    const c2 = commit(repo, 'a', 'two')
    const mirror = new GitMirror({ url: repo, dir: join(t.dir, 'git', 'hello.git') })
    const moves: RefMove[] = []
    let queuedSignals = 0
    const make = () => watcher(
      { repositories: [{ id: 'hello', branches: ['main'], tags: [], recipeKey: 'r' }], backfill: 1, pollIntervalMs: 0 },
      { mirrorOf: () => mirror, queue: t.store, refs: t.store, onRefMoved: async m => { moves.push(m) }, onQueued: () => { queuedSignals++ } }
    )
    const w = make()
    await w.pollNow()
    expect(w.polls()).toBe(1)
    // backfill 1: only the tip on first sight
    expect((await t.store.jobsList()).map(j => j.commit)).toEqual([c2])
    expect(moves).toEqual([{ repoId: 'hello', ref: 'refs/heads/main', commit: c2, previous: null, commits: [c2] }])
    await w.pollNow()
    expect(moves).toHaveLength(1)
    const c3 = commit(repo, 'a', 'three')
    const c4 = commit(repo, 'a', 'four')
    // A new watcher (a restarted node) continues from the refs the store remembers.
    const again = make()
    await again.pollNow()
    expect((await t.store.jobsList()).map(j => j.commit).sort()).toEqual([c2, c3, c4].sort())
    expect(moves[1]).toMatchObject({ previous: c2, commit: c4, commits: [c3, c4] })
    expect(queuedSignals).toBe(2)
    expect(c1).not.toBe(c2)
  })

  it('runs one poll at a time: a request during a poll gets one more poll after it', async () => {
    const { t, repo } = await storeAndRepo()
    commit(repo, 'a', 'one')
    const mirror = new GitMirror({ url: repo, dir: join(t.dir, 'git', 'hello.git') })
    const w = watcher(
      { repositories: [{ id: 'hello', branches: ['main'], tags: [], recipeKey: 'r' }], backfill: 5, pollIntervalMs: 0 },
      { mirrorOf: () => mirror, queue: t.store, refs: t.store }
    )
    await Promise.all([w.pollNow(), w.pollNow(), w.pollNow()])
    expect(w.polls()).toBe(2)
  })

  it('says loudly when a watched branch is missing on the remote, naming the branches it has, and clears it once the branch appears', async () => {
    const { t, repo } = await storeAndRepo('develop')
    commit(repo, 'a', 'one')
    git(repo, ['branch', 'v1.x'])
    const mirror = new GitMirror({ url: repo, dir: join(t.dir, 'git', 'zlib.git') })
    const logged: Array<{ level: string, event: string, fields: Record<string, unknown> }> = []
    const w = watcher(
      { repositories: [{ id: 'zlib', branches: ['main'], tags: [], recipeKey: 'r' }], backfill: 1, pollIntervalMs: 0 },
      { mirrorOf: () => mirror, queue: t.store, refs: t.store, progressIntervalMs: 1, log: (level, event, fields) => logged.push({ level, event, fields }) }
    )
    await w.pollNow()
    // The first clone says what it is doing.
    expect(logged.some(l => l.event === 'cloning repository' && l.fields.repo === 'zlib')).toBe(true)
    const warned = logged.filter(l => l.event === 'watched branch missing')
    expect(warned).toHaveLength(1)
    expect(warned[0].level).toBe('warn')
    expect(warned[0].fields.problem).toBe('the remote has no branch matching "main" (it has only develop, v1.x); fix "branches" for zlib in the policy')
    expect(w.problems()).toEqual([{ repoId: 'zlib', problem: warned[0].fields.problem, missingBranches: ['main'], remoteBranches: ['develop', 'v1.x'] }])
    // Said once, not at every poll.
    await w.pollNow()
    expect(logged.filter(l => l.event === 'watched branch missing')).toHaveLength(1)
    git(repo, ['branch', 'main'])
    await w.pollNow()
    expect(w.problems()).toEqual([])
    expect(logged.some(l => l.event === 'watched branches found')).toBe(true)
    expect(await t.store.jobsList()).toHaveLength(1)
  })

  it('lists the mirror\'s refs once per poll (watched refs and the missing-branch check from one listing)', async () => {
    const { t, repo } = await storeAndRepo()
    const c1 = commit(repo, 'a', 'one')
    // Counts the mirror's ref listings: each of these methods runs its own git for-each-ref.
    const calls: string[] = []
    class CountingMirror extends GitMirror {
      override async branches (): Promise<string[]> { calls.push('branches'); return await super.branches() }
      override async resolveRefs (p: Parameters<GitMirror['resolveRefs']>[0]): ReturnType<GitMirror['resolveRefs']> { calls.push('resolveRefs'); return await super.resolveRefs(p) }
      override async resolveWatchedRefs (p: Parameters<GitMirror['resolveWatchedRefs']>[0]): ReturnType<GitMirror['resolveWatchedRefs']> { calls.push('resolveWatchedRefs'); return await super.resolveWatchedRefs(p) }
    }
    const mirror = new CountingMirror({ url: repo, dir: join(t.dir, 'git', 'hello.git') })
    const w = watcher(
      { repositories: [{ id: 'hello', branches: ['main', 'release/*'], tags: [], recipeKey: 'r' }], backfill: 1, pollIntervalMs: 0 },
      { mirrorOf: () => mirror, queue: t.store, refs: t.store }
    )
    await w.pollNow()
    await w.pollNow()
    expect(calls).toEqual(['resolveWatchedRefs', 'resolveWatchedRefs'])
    expect((await t.store.jobsList()).map(j => j.commit)).toEqual([c1])
    expect(w.problems()).toEqual([{ repoId: 'hello', problem: expect.stringMatching(/no branch matching "release\/\*" \(it has only main\)/), missingBranches: ['release/*'], remoteBranches: ['main'] }])
  })
})
