// A hostile build must not reach the node's open files: LevelDB (a native addon) keeps LOG,
// LOCK, the write-ahead log and MANIFEST open without close-on-exec, and Node's child_process
// passes such descriptors on to every child. Only stdin, stdout and stderr may reach a build.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { DEFAULT_RECIPE_LIMITS } from '@quorate/core'
import { Store } from '@quorate/store'
import { GitMirror, runBuild, prepareBuildArea, resolveBuildUser } from '@quorate/builder'

const work = mkdtempSync(join(tmpdir(), 'quorate-fds-'))
afterAll(() => { rmSync(work, { recursive: true, force: true }) })

const git = (cwd: string, ...args: string[]): string => execFileSync('git', args, {
  cwd, encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cwd, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' }
}).trim()

describe('descriptors a build inherits', () => {
  it.each(['bwrap', 'none'] as const)('a build under sandbox "%s" sees only 0, 1 and 2 while the node holds LevelDB open', async sandbox => {
    const dataDir = join(work, `data-${sandbox}`)
    const store = await Store.open(join(dataDir, 'db'))
    const area = await prepareBuildArea({ user: resolveBuildUser(), dataDir, defaultDir: join(dataDir, 'work') })
    try {
      // The node's own process really does hold LevelDB files open (so this test can fail).
      const held = readdirSync('/proc/self/fd').map(fd => { try { return readlinkSync(`/proc/self/fd/${fd}`) } catch { return '' } })
      expect(held.some(target => target.startsWith(join(dataDir, 'db')))).toBe(true)

      const repo = join(work, `repo-${sandbox}`)
      git(work, 'init', '-q', '-b', 'main', repo)
      git(repo, 'commit', '-q', '--allow-empty', '-m', 'x')
      const commit = git(repo, 'rev-parse', 'HEAD')
      const mirror = new GitMirror({ url: repo, dir: join(work, `mirror-${sandbox}.git`) })
      await mirror.fetch()
      const copy = join(work, `copy-${sandbox}`)
      // The build's own process lists its descriptors into the log (with no redirection of its
      // own: a shell's redirections add descriptors of their own), then tries to read from
      // every descriptor number up to 64 through /proc/self/fd.
      const script = 'mkdir out; exec ls -l /proc/self/fd'
      const outcome = await runBuild({
        repoId: 'demo', commit, ref: 'refs/heads/main', mirror,
        workDir: join(area, randomUUID()),
        recipe: { build: ['sh', '-c', script], output: 'out', outputKind: 'dir' },
        limits: { ...DEFAULT_RECIPE_LIMITS, timeoutSeconds: 30 },
        sandbox,
        outputCopyDir: copy
      })
      if (!outcome.ok) throw new Error(`${outcome.reason}\n${outcome.log.tail}`)
      const listed = outcome.log.tail.split('\n').map(line => / (\d+) -> (.*)$/.exec(line)).filter(m => m !== null)
      // ls's own descriptor is the /proc/self/fd directory it reads.
      const inherited = listed.filter(m => !/^\/proc\/\d+\/fd$/.test(m[2])).map(m => m[1])
      expect(listed.length).toBeGreaterThan(3)
      expect(inherited.sort()).toEqual(['0', '1', '2'])
    } finally {
      await store.close()
      rmSync(area, { recursive: true, force: true })
    }
  })
})
