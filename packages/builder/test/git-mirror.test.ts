import { describe, it, expect, afterEach } from 'vitest'
import { join } from 'node:path'
import { readFile, symlink, writeFile, chmod, mkdir } from 'node:fs/promises'
import { isQuorateError } from '@quorate/core'
import { GitMirror, checkGitUrl, globToRegExp } from '../src/index.js'
import { tempDirs, makeRepo, commitFiles, git } from './helpers.js'

const T0 = 1_700_000_000

describe('GitMirror', () => {
  const temp = tempDirs()
  afterEach(temp.cleanup)

  it('names watched branches the remote lacks, with the branches it has, and reports a first clone\'s progress', async () => {
    const root = await temp.make()
    const repo = await makeRepo(join(root, 'repo'))
    await commitFiles(repo, { 'a.txt': 'one' }, 'c1', T0)
    await git(repo, ['branch', 'develop'])
    await git(repo, ['branch', 'release/1.0'])
    const mirror = new GitMirror({ url: repo, dir: join(root, 'mirror.git') })
    const progress: Array<{ url: string, elapsedMs: number, line: string }> = []
    await mirror.fetch({ progressIntervalMs: 1, onCloneProgress: p => progress.push(p) })
    expect(progress.length).toBeGreaterThan(0)
    expect(progress[0].url).toBe(repo)
    expect(await mirror.branches()).toEqual(['develop', 'main', 'release/1.0'])
    expect(await mirror.missingBranches(['master', 'main', 'release/*', 'refs/heads/feature/**'])).toEqual({
      missing: ['master', 'refs/heads/feature/**'],
      branches: ['develop', 'main', 'release/1.0']
    })
    // Subject, author and author date (in the author's offset) for the dashboard, unsigned.
    const c2 = await git(repo, ['commit', '-q', '--allow-empty', '-m', 'Fix the <b>parser</b>\ncontinued\n\nbody text'], { GIT_AUTHOR_NAME: 'Ada Lovelace', GIT_AUTHOR_DATE: `@${T0} +0200`, GIT_COMMITTER_DATE: `@${T0} +0000` })
      .then(async () => await git(repo, ['rev-parse', 'HEAD']))
    await mirror.fetch()
    const info = await mirror.commitSummaries([c2, 'f'.repeat(40), 'not-a-commit'])
    expect([...info.keys()]).toEqual([c2])
    expect(info.get(c2)).toEqual({ subject: 'Fix the <b>parser</b> continued', author: 'Ada Lovelace', date: new Date((T0 + 7200) * 1000).toISOString().slice(0, 19) + '+02:00' })
    // Later fetches are not clones: no progress.
    const count = progress.length
    await mirror.fetch({ progressIntervalMs: 1, onCloneProgress: p => progress.push(p) })
    expect(progress.length).toBe(count)
  })

  it('reads commit summaries through one kept git process: concurrent asks, objects that are not commits, and commits fetched since', async () => {
    const root = await temp.make()
    const repo = await makeRepo(join(root, 'repo'))
    const c1 = await commitFiles(repo, { 'a.txt': 'one' }, 'first', T0)
    const c2 = await commitFiles(repo, { 'big.bin': 'x'.repeat(2 * 1024 * 1024) }, 'second', T0 + 10)
    const blob = await git(repo, ['rev-parse', `${c2}:big.bin`])
    const mirror = new GitMirror({ url: repo, dir: join(root, 'mirror.git') })
    try {
      expect((await mirror.commitSummaries([c1])).size).toBe(0) // no mirror yet
      await mirror.fetch()
      const asks = await Promise.all([[c1], [c2, 'f'.repeat(40)], [blob, c1], [c2]].map(async cs => await mirror.commitSummaries(cs)))
      expect(asks.map(m => [...m.values()].map(s => s.subject))).toEqual([['first'], ['second'], ['first'], ['second']])
      const c3 = await commitFiles(repo, { 'a.txt': 'three' }, 'third', T0 + 20)
      expect((await mirror.commitSummaries([c3])).size).toBe(0)
      await mirror.fetch()
      expect([...(await mirror.commitSummaries([c3, c1])).values()].map(s => s.subject)).toEqual(['third', 'first'])
      mirror.close()
      expect([...(await mirror.commitSummaries([c2])).values()].map(s => s.subject)).toEqual(['second'])
    } finally {
      mirror.close()
    }
  })

  it('fetches a local repository, resolves ref globs, lists commits and checks out', async () => {
    const root = await temp.make()
    const repo = await makeRepo(join(root, 'repo'))
    const c1 = await commitFiles(repo, { 'a.txt': 'one' }, 'c1', T0)
    const c2 = await commitFiles(repo, { 'a.txt': 'two' }, 'c2', T0 + 10)
    await git(repo, ['checkout', '-q', '-b', 'feature/a'])
    const f1 = await commitFiles(repo, { 'f.txt': 'feature' }, 'f1', T0 + 20)
    await git(repo, ['checkout', '-q', 'main'])
    const c3 = await commitFiles(repo, { 'a.txt': 'three' }, 'c3', T0 + 30)
    const mergeDate = { GIT_AUTHOR_DATE: `@${T0 + 40} +0000`, GIT_COMMITTER_DATE: `@${T0 + 40} +0000` }
    await git(repo, ['merge', '-q', '--no-ff', '-m', 'merge', 'feature/a'], mergeDate)
    const m = await git(repo, ['rev-parse', 'HEAD'])
    await git(repo, ['branch', 'release/1.0', c2])
    await git(repo, ['branch', 'release/x/y', c3])
    await git(repo, ['tag', '-a', '-m', 'annotated', 'v1', c1])
    await git(repo, ['tag', '-a', '-m', 'tag of a tag', 'v1-again', 'v1'])
    await git(repo, ['tag', 'v2', c3])
    await git(repo, ['tag', 'other', c3])
    await git(repo, ['tag', 'v-tree', `${c3}^{tree}`])

    const mirror = new GitMirror({ url: repo, dir: join(root, 'mirrors', 'repo.git') })
    await mirror.fetch()
    const refs = await mirror.resolveRefs({ branches: ['main', 'release/**'], tags: ['v*'] })
    expect(Object.fromEntries(refs)).toEqual({
      'refs/heads/main': m,
      'refs/heads/release/1.0': c2,
      'refs/heads/release/x/y': c3,
      'refs/tags/v1': c1,
      'refs/tags/v1-again': c1,
      'refs/tags/v2': c3
    })
    const oneLevel = await mirror.resolveRefs({ branches: ['release/*', 'feature/?'] })
    expect([...oneLevel.keys()].sort()).toEqual(['refs/heads/feature/a', 'refs/heads/release/1.0'])

    expect(await mirror.commitsSince(c3, c1, 10)).toEqual([c2, c3])
    expect(await mirror.commitsSince(c3, c1, 1)).toEqual([c3])
    expect(await mirror.commitsSince(m, null, 10)).toEqual([c1, c2, c3, m])
    expect(await mirror.commitsSince(m, null, 2)).toEqual([c3, m])
    const sinceC2 = await mirror.commitsSince(m, c2, 10)
    expect(new Set(sinceC2)).toEqual(new Set([f1, c3, m]))
    expect(sinceC2.at(-1)).toBe(m)
    expect(await mirror.commitsSince(c3, c3, 10)).toEqual([])
    // An old head the mirror never had (force push, then gc) falls back to first-parent history.
    expect(await mirror.commitsSince(c2, 'f'.repeat(40), 10)).toEqual([c1, c2])
    expect(await mirror.commitTime(c2)).toBe(T0 + 10)
    // Ref observation fields: newest first, child before parent, a rollback introduces nothing.
    expect(await mirror.refMove(c3, c1)).toEqual({ introduced: [c3, c2], truncated: false, fastForward: true })
    expect(await mirror.refMove(c3, c1, 1)).toEqual({ introduced: [c3], truncated: true, fastForward: true })
    expect(await mirror.refMove(c1, c3)).toEqual({ introduced: [], truncated: false, fastForward: false })
    expect(await mirror.refMove(c2, null)).toEqual({ introduced: [c2, c1], truncated: false, fastForward: false })
    const merge = await mirror.refMove(m, c2)
    expect(merge.introduced[0]).toBe(m)
    expect(new Set(merge.introduced)).toEqual(new Set([f1, c3, m]))
    expect(await mirror.refMove(c2, 'f'.repeat(40))).toEqual({ introduced: [c2, c1], truncated: true, fastForward: false })

    const dest = join(root, 'work', 'src')
    await mirror.checkout(c2, dest)
    expect(await readFile(join(dest, 'a.txt'), 'utf8')).toBe('two')
    expect(await git(dest, ['rev-parse', 'HEAD'])).toBe(c2)
    expect(await git(dest, ['status', '--porcelain'])).toBe('')
    expect(await git(dest, ['remote'])).toBe('')
    expect(await git(dest, ['for-each-ref', '--format=%(refname)', 'refs/heads', 'refs/remotes'])).toBe('')
    expect(await git(dest, ['describe', '--tags'])).toMatch(/^v1(-again)?-1-g/)
    const again = await mirror.checkout(c2, dest).catch((e: unknown) => e)
    expect(isQuorateError(again, 'GIT_FAILED')).toBe(true)
    expect((again as Error).message).toContain('not empty')
    await expect(mirror.checkout('HEAD', join(root, 'x'))).rejects.toThrow(/40 \(or 64\) lowercase hex/)
    await expect(mirror.checkout('e'.repeat(40), join(root, 'y'))).rejects.toThrow(/commit e{40} is not in the mirror of .*; fetch first/)

    // Deleted branches and moved branches follow the source on the next fetch.
    await git(repo, ['branch', '-D', 'release/x/y'])
    await git(repo, ['update-ref', 'refs/heads/release/1.0', c1])
    await mirror.fetch()
    const after = await mirror.resolveRefs({ branches: ['release/**'] })
    expect(Object.fromEntries(after)).toEqual({ 'refs/heads/release/1.0': c1 })
  })

  it('reads files at a commit without checking out, and follows nothing', async () => {
    const root = await temp.make()
    const repo = await makeRepo(join(root, 'repo'))
    const old = await commitFiles(repo, { 'README.md': 'old\n' }, 'before the recipe', T0)
    const recipe = '{"build":["make"],"output":"out","outputKind":"dir"}\n'
    const binary = Buffer.from([0, 1, 2, 0xff, 0xfe, 10, 13, 0])
    await mkdir(join(repo, 'bin'))
    await writeFile(join(repo, 'bin', 'blob.bin'), binary)
    await writeFile(join(repo, 'bin', 'run.sh'), '#!/bin/sh\n')
    await chmod(join(repo, 'bin', 'run.sh'), 0o755)
    await writeFile(join(repo, 'star*name'), 'literal')
    await writeFile(join(repo, 'big.txt'), 'x'.repeat(70_000))
    await mkdir(join(repo, 'target'))
    await writeFile(join(repo, 'target', 'secret.json'), '{"s":1}')
    await symlink('target/secret.json', join(repo, 'link.json'))
    await symlink('target', join(repo, 'linkdir'))
    await symlink('/etc/passwd', join(repo, 'abs.json'))
    const now = await commitFiles(repo, { '.quorate/recipe.json': recipe }, 'recipe', T0 + 10)
    // A submodule is a gitlink entry (mode 160000) naming a commit.
    await git(repo, ['update-index', '--add', '--cacheinfo', `160000,${old},sub`])
    const date = { GIT_AUTHOR_DATE: `@${T0 + 20} +0000`, GIT_COMMITTER_DATE: `@${T0 + 20} +0000` }
    await git(repo, ['commit', '-q', '-m', 'submodule'], date) // not commitFiles: `add -A` would drop the gitlink
    const withSub = await git(repo, ['rev-parse', 'HEAD'])

    const mirror = new GitMirror({ url: repo, dir: join(root, 'mirror.git') })
    await mirror.fetch()
    expect(Buffer.from((await mirror.readFile(now, '.quorate/recipe.json'))!).toString()).toBe(recipe)
    expect(await mirror.readFile(old, '.quorate/recipe.json')).toBeUndefined() // absent at that commit
    expect(Buffer.from((await mirror.readFile(now, 'bin/blob.bin'))!)).toEqual(binary)
    expect(Buffer.from((await mirror.readFile(now, 'bin/run.sh'))!).toString()).toBe('#!/bin/sh\n')
    expect(Buffer.from((await mirror.readFile(now, 'star*name'))!).toString()).toBe('literal')
    expect(await mirror.readFile(now, 'star')).toBeUndefined() // a pathspec is not a glob or prefix
    expect(await mirror.readFile(now, '*')).toBeUndefined()
    expect(await mirror.readFile(now, 'nothing/here.json')).toBeUndefined()
    expect(await mirror.readFile(now, 'linkdir/secret.json')).toBeUndefined() // not through a symlinked directory
    expect(await mirror.readFile(withSub, 'sub/README.md')).toBeUndefined() // nor into a submodule
    expect((await mirror.readFile(now, 'big.txt', 100_000))?.length).toBe(70_000)
    expect((await mirror.readFile(now, 'README.md', 4))?.length).toBe(4)

    const problem = async (commit: string, path: string, max?: number): Promise<{ code?: string, problem?: unknown, message: string }> => {
      const err = await mirror.readFile(commit, path, max).then(() => null, (e: unknown) => e)
      if (!isQuorateError(err)) throw new Error(`expected a QuorateError for ${path}, got ${String(err)}`)
      return { code: err.code, problem: err.fields.problem, message: err.message }
    }
    expect(await problem(now, 'big.txt')).toEqual({ code: 'GIT_FAILED', problem: 'too-large', message: `big.txt at commit ${now} is 70000 bytes, more than the 65536 bytes allowed; make it smaller` })
    expect(await problem(now, 'link.json')).toMatchObject({ problem: 'not-a-regular-file', message: expect.stringContaining('is a symlink, not a regular file; it is not followed') })
    expect(await problem(now, 'abs.json')).toMatchObject({ problem: 'not-a-regular-file' })
    expect(await problem(withSub, 'sub')).toMatchObject({ problem: 'not-a-regular-file', message: expect.stringContaining('is a submodule') })
    expect(await problem(now, 'target')).toMatchObject({ problem: 'not-a-regular-file', message: expect.stringContaining('is a directory') })
    expect(await problem('e'.repeat(40), 'README.md')).toMatchObject({ code: 'GIT_FAILED', message: expect.stringMatching(/commit e{40} is not in the mirror of .*; fetch first/) })
    for (const bad of ['', '/etc/passwd', '../x', 'a/../b', './a', 'a//b', 'a/', 'a\0b']) {
      expect((await problem(now, bad)).code, bad).toBe('USAGE')
    }
    expect((await problem('HEAD', 'README.md')).code).toBe('USAGE')
  })

  it('accepts only allowed URL forms and never shows credentials', () => {
    for (const ok of ['https://example.org/a.git', 'ssh://git@example.org/a.git', 'git://example.org/a', 'file:///srv/a.git',
      'git@github.com:org/repo.git', 'example.org:repo', '/srv/git/a.git', './a', 'a']) {
      expect(() => checkGitUrl(ok), ok).not.toThrow()
    }
    for (const bad of ['ext::sh -c touch% /tmp/pwned', 'fd::3', 'http://example.org/a.git', 'ftp://example.org/a', 'HTTPS://example.org/a',
      '-oProxyCommand=touch /tmp/x', '--upload-pack=touch /tmp/x', 'host:-oProxyCommand=x', 'ssh://-oProxyCommand=x/a', 'a\nb', '']) {
      let err: unknown
      try { checkGitUrl(bad) } catch (e) { err = e }
      expect(isQuorateError(err, 'GIT_URL_REJECTED'), bad).toBe(true)
      expect((err as Error).message).toMatch(/https:\/\/.*ssh:\/\/.*user@host:path/)
    }
    let err: unknown
    try { new GitMirror({ url: 'http://alice:hunter2@example.org/a.git', dir: '/nonexistent' }) } catch (e) { err = e }
    expect(isQuorateError(err, 'GIT_URL_REJECTED')).toBe(true)
    expect((err as Error).message).toContain('http://***@example.org/a.git')
    expect(JSON.stringify(err) + (err as Error).message).not.toContain('hunter2')
  })

  it('reports a repository that cannot be fetched, without leaking the token', async () => {
    const root = await temp.make()
    const missing = new GitMirror({ url: join(root, 'nope'), dir: join(root, 'm1') })
    const err = await missing.fetch().catch((e: unknown) => e)
    expect(isQuorateError(err, 'GIT_FAILED')).toBe(true)
    expect((err as Error).message).toMatch(new RegExp(`^could not fetch ${join(root, 'nope')}: .+; check the repository URL in the policy and the node's credentials$`))
    expect((err as Error).message).toContain('does not appear to be a git repository')
    await expect(missing.resolveRefs({ branches: ['*'] })).resolves.toEqual(new Map())

    // Port 1 on loopback refuses at once; the token must appear neither in errors nor in the mirror's config.
    const secret = new GitMirror({
      url: 'https://bob:pa55word@127.0.0.1:1/a.git',
      dir: join(root, 'm2'),
      credentials: { token: 'TOKEN-abc123' }
    })
    const err2 = await secret.fetch().catch((e: unknown) => e)
    expect(isQuorateError(err2, 'GIT_FAILED')).toBe(true)
    const shown = (err2 as Error).message + JSON.stringify((err2 as { fields: unknown }).fields)
    expect(shown).toContain('https://***@127.0.0.1:1/a.git')
    expect(shown).not.toMatch(/pa55word|TOKEN-abc123/)
    expect(await readFile(join(root, 'm2', 'config'), 'utf8')).not.toMatch(/pa55word|TOKEN|extraHeader/i)

    const unfetched = new GitMirror({ url: join(root, 'nope'), dir: join(root, 'never') })
    await expect(unfetched.resolveRefs({ branches: ['*'] })).rejects.toThrow(/call fetch\(\) first/)
  })

  it('matches globs by path segment', () => {
    expect(globToRegExp('release/*').test('release/1.0')).toBe(true)
    expect(globToRegExp('release/*').test('release/1/2')).toBe(false)
    expect(globToRegExp('release/**').test('release/1/2')).toBe(true)
    expect(globToRegExp('**/main').test('main')).toBe(true)
    expect(globToRegExp('**/main').test('a/b/main')).toBe(true)
    expect(globToRegExp('v1.?').test('v1.2')).toBe(true)
    expect(globToRegExp('v1.?').test('v1x2')).toBe(false)
  })
})
