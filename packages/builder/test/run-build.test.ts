import { describe, it, expect, afterEach, beforeAll } from 'vitest'
import { join } from 'node:path'
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { existsSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { DEFAULT_RECIPE_LIMITS, isQuorateError, type Recipe, type RecipeLimits } from '@quorate/core'
import { GitMirror, runBuild, hashOutput, type BuildOutcome, type BuildRequest } from '../src/index.js'
import { tempDirs, makeRepo, commitFiles, processesWith } from './helpers.js'

const COMMIT_TIME = 1_712_345_678
const LIMITS: RecipeLimits = { ...DEFAULT_RECIPE_LIMITS, timeoutSeconds: 30, maxLogBytes: 64 * 1024 }

describe('runBuild without a sandbox', () => {
  const temp = tempDirs()
  let mirror: GitMirror
  let commit: string
  let root: string
  afterEach(temp.cleanup)

  beforeAll(async () => {
    // Not through `temp`: this repository outlives each test.
    root = await mkdtemp(join(tmpdir(), 'quorate-build-repo-'))
    const repo = await makeRepo(join(root, 'repo'))
    commit = await commitFiles(repo, { 'README.md': '# demo\n', 'src/greeting.txt': 'hello' }, 'demo project', COMMIT_TIME)
    mirror = new GitMirror({ url: repo, dir: join(root, 'mirror.git') })
    await mirror.fetch()
    return async () => { await rm(root, { recursive: true, force: true }) }
  })

  const build = async (recipe: Partial<Recipe>, extra: Partial<BuildRequest> = {}): Promise<BuildOutcome> => {
    const workDir = join(await temp.make('quorate-build-work-'), 'work')
    return await runBuild({
      repoId: 'demo',
      commit,
      ref: 'refs/heads/main',
      mirror,
      workDir,
      recipe: { build: ['true'], output: 'out', outputKind: 'dir', ...recipe },
      limits: LIMITS,
      sandbox: 'none',
      ...extra
    })
  }

  it('builds reproducibly in a scrubbed environment, and leaves no process or work dir behind', async () => {
    process.env.QUORATE_TEST_LEAK = 'parent-secret'
    const marker = `quorate-leftover-${process.pid}-${Date.now()}`
    const recipe: Partial<Recipe> = {
      build: ['sh', '-c', [
        'echo "ENV-BEGIN"; env | sort; echo "ENV-END"; echo "UMASK=$(umask)"; echo "PWD=$(pwd)"',
        'git rev-parse HEAD',
        `(sh -c "sleep 1000; : ${marker}" &)`,
        'mkdir -p out/sub ro/x && chmod 555 ro && cp src/greeting.txt out/a.txt && printf x > out/sub/b && date -u -d "@$SOURCE_DATE_EPOCH" +%FT%TZ > out/date'
      ].join('\n')]
    }
    const phases: string[] = []
    const workDir = join(await temp.make(), 'work')
    const first = await build(recipe, { workDir, onProgress: phase => phases.push(phase) })
    const second = await build(recipe)
    delete process.env.QUORATE_TEST_LEAK
    if (!first.ok || !second.ok) throw new Error(`build failed: ${JSON.stringify(first.ok ? second : first)}`)
    expect(phases).toEqual(['checkout', 'build', 'hash'])
    expect(first.output.narSha256).toBe(second.output.narSha256)
    expect(first.output.fileList.files.map(f => f.path)).toEqual(['a.txt', 'date', 'sub', 'sub/b'])
    expect(first.output.topLevelFiles.map(f => f.name)).toEqual(['a.txt', 'date'])
    expect(first.output.fileList.files.find(f => f.path === 'a.txt')?.executable).toBeUndefined()

    const log = first.log.head
    const env = (/^ENV-BEGIN\n([\s\S]*?)^ENV-END$/m.exec(log)?.[1] ?? '').trim().split('\n')
    const names = env.map(l => l.slice(0, l.indexOf('=')))
    // The shell itself adds PWD (and some shells OLDPWD/SHLVL); nothing comes from the parent.
    expect(names.filter(n => !['PWD', 'OLDPWD', 'SHLVL', '_'].includes(n))).toEqual(['HOME', 'LANG', 'LC_ALL', 'PATH', 'SOURCE_DATE_EPOCH', 'TZ'])
    expect(env).toContain(`SOURCE_DATE_EPOCH=${COMMIT_TIME}`)
    expect(env).toContain('PATH=/usr/local/bin:/usr/bin:/bin')
    expect(env).toContain('TZ=UTC')
    expect(env).toContain('LC_ALL=C.UTF-8')
    expect(log).not.toContain('parent-secret')
    expect(log).toContain('UMASK=0022')
    expect(log).toContain(commit) // a real git working tree at exactly the commit
    expect(first.log.totalBytes).toBeGreaterThan(0)
    expect(first.log.sha256).toMatch(/^[0-9a-f]{64}$/)

    expect(first.fingerprint.sandbox).toBe('none')
    expect(first.fingerprint.tools.git).toMatch(/^git version /)
    expect(first.fingerprint.kernel.length).toBeGreaterThan(0)
    expect(first.durationsMs.build).toBeGreaterThan(0)
    expect(Date.parse(first.finishedOn)).toBeGreaterThanOrEqual(Date.parse(first.startedOn))
    expect(await processesWith(marker)).toEqual([])
    expect(existsSync(workDir)).toBe(false) // removed, read-only directory included
  })

  it('stamps outputs with the commit time and copies the output as hashed', async () => {
    const copy = join(await temp.make(), 'copy')
    const outcome = await build({ build: ['sh', '-c', 'mkdir out && date -u -d "@$SOURCE_DATE_EPOCH" +%s > out/t && touch -d "@$SOURCE_DATE_EPOCH" out/t'] }, { outputCopyDir: copy })
    if (!outcome.ok) throw new Error(outcome.reason)
    expect((await readFile(join(copy, 't'), 'utf8')).trim()).toBe(String(COMMIT_TIME))
    expect((await hashOutput(copy)).narSha256).toBe(outcome.output.narSha256)
  })

  it('reports a failing build with its exit status and the end of its log', async () => {
    // 20 000 numbered lines (108 894 bytes) overflow the 64 KiB log; stdout and stderr stay in order.
    const outcome = await build({ build: ['sh', '-c', 'seq 1 20000; echo progress; echo "boom: something broke" >&2; exit 3'] })
    expect(outcome.ok).toBe(false)
    if (outcome.ok) return
    expect(outcome.exitStatus).toBe(3)
    expect(outcome.timedOut).toBe(false)
    expect(outcome.reason).toContain('exited with status 3')
    expect(outcome.log.tail).toMatch(/\n20000\nprogress\nboom: something broke\nquorate: build phase exited with status 3\n$/)
    expect(outcome.log.head).toMatch(/^quorate: build phase: \["sh","-c",.*\]\n1\n2\n3\n/)
    expect(Buffer.byteLength(outcome.log.head)).toBe(32 * 1024)
    expect(Buffer.byteLength(outcome.log.tail)).toBe(32 * 1024)
    expect(outcome.log.totalBytes).toBeGreaterThan(108_894 + 40)
    expect(outcome.fingerprint.sandbox).toBe('none')
    // What is kept says where bytes were left out; it is not the signed log, so not its digest.
    expect(outcome.log.complete).toBe(false)
    const kept = Buffer.from(outcome.log.kept).toString('utf8')
    expect(kept).toMatch(/\n\[quorate: \d+ bytes of the log left out here; the recipe's maxLogBytes keeps the first and last 32768 bytes\]\n/)
    expect(kept.startsWith(outcome.log.head)).toBe(true)
    expect(kept.endsWith(outcome.log.tail)).toBe(true)
  })

  it('fails a recipe that sets image without "outputKind": "oci", running nothing and leaving no work dir', async () => {
    const workDir = join(await temp.make(), 'work')
    const outcome = await build({ build: ['sh', '-c', 'mkdir out; echo ran > out/x'], image: { refName: 'app:1' } }, { workDir })
    expect(outcome.ok).toBe(false)
    if (outcome.ok) return
    expect(outcome.reason).toBe('the recipe is invalid: recipe.image: is used only with "outputKind": "oci"; remove it or set outputKind to "oci"')
    expect(outcome.exitStatus).toBeNull()
    expect(outcome.log.totalBytes).toBe(0)
    expect(existsSync(workDir)).toBe(false)
  })

  it('keeps a log that fits whole, byte for byte, under its signed digest', async () => {
    const outcome = await build({ build: ['sh', '-c', 'seq 1 3000; echo done; mkdir out'] })
    if (!outcome.ok) throw new Error(outcome.reason)
    expect(outcome.log.complete).toBe(true)
    const kept = Buffer.from(outcome.log.kept)
    expect(createHash('sha256').update(kept).digest('hex')).toBe(outcome.log.sha256)
    expect(kept.length).toBe(outcome.log.totalBytes)
    expect(kept.toString('utf8')).toMatch(/^quorate: build phase: .*\n1\n2\n[\s\S]*\n3000\ndone\n/)
  })

  it('says every interval which phase is still running, for how long, and how big its log is', async () => {
    const ticks: Array<{ phase: string, info?: Record<string, unknown> }> = []
    const outcome = await build({ build: ['sh', '-c', 'echo started; sleep 1; echo finished; mkdir out'] }, {
      progressIntervalMs: 200,
      onProgress: (phase, info) => { if (info?.tick === true) ticks.push({ phase, info }) }
    })
    expect(outcome.ok).toBe(true)
    const during = ticks.filter(t => t.phase === 'build')
    expect(during.length).toBeGreaterThanOrEqual(2)
    const last = during[during.length - 1].info as { elapsedMs: number, phaseElapsedMs: number, logBytes: number }
    expect(last.elapsedMs).toBeGreaterThanOrEqual(last.phaseElapsedMs)
    expect(last.phaseElapsedMs).toBeGreaterThan(300)
    expect(last.logBytes).toBeGreaterThan('started\n'.length)
    // No tick after the build returned.
    const count = ticks.length
    await new Promise(resolve => setTimeout(resolve, 500))
    expect(ticks.length).toBe(count)
  })

  it('kills a hanging build and all its processes at the timeout', async () => {
    const marker = `quorate-hang-${process.pid}-${Date.now()}`
    const started = Date.now()
    const outcome = await build({ build: ['sh', '-c', `sh -c "sleep 1000; : ${marker}" & sleep 1000`] }, { limits: { ...LIMITS, timeoutSeconds: 1 } })
    expect(Date.now() - started).toBeLessThan(5000)
    expect(outcome.ok).toBe(false)
    if (outcome.ok) return
    expect(outcome.timedOut).toBe(true)
    expect(outcome.exitStatus).toBeNull()
    expect(outcome.reason).toContain('within 1 s')
    expect(await processesWith(marker)).toEqual([])
  })

  it('rejects when cancelled, killing the build', async () => {
    const marker = `quorate-cancel-${process.pid}-${Date.now()}`
    const controller = new AbortController()
    const running = build({ build: ['sh', '-c', `sh -c "sleep 1000; : ${marker}"`] }, {
      signal: controller.signal,
      onProgress: phase => { if (phase === 'build') setTimeout(() => controller.abort(), 200) }
    })
    const err = await running.catch((e: unknown) => e)
    expect(isQuorateError(err, 'BUILD_FAILED')).toBe(true)
    expect((err as { fields: Record<string, unknown> }).fields.aborted).toBe(true)
    expect(await processesWith(marker)).toEqual([])
  })

  it('refuses outputs that are missing, lead outside the checkout or hold special files', async () => {
    const outsideDir = await temp.make()
    const missing = await build({ build: ['true'], output: 'dist' })
    expect(missing.ok === false && missing.reason).toBe("the recipe's output path dist was not produced; check the recipe's \"output\" and that the build writes there")

    const escaped = await build({ build: ['ln', '-s', outsideDir, 'out'] })
    expect(escaped.ok).toBe(false)
    expect(escaped.ok === false && escaped.reason).toContain(`outside the checkout (through a symlink to ${outsideDir})`)

    const relativeEscape = await build({ build: ['sh', '-c', 'mkdir -p a && ln -s ../../.. a/up'], output: 'a/up' })
    expect(relativeEscape.ok === false && relativeEscape.reason).toContain('outside the checkout')

    // A symlink that stays inside the checkout is followed.
    const inside = await build({ build: ['sh', '-c', 'mkdir -p real && echo hi > real/f && ln -s real out'] })
    expect(inside.ok && inside.output.fileList.files.map(f => f.path)).toEqual(['f'])

    const fifo = await build({ build: ['sh', '-c', 'mkdir -p out && mkfifo out/pipe'] })
    expect(fifo.ok === false && fifo.reason).toBe('the output is invalid: out/pipe is a fifo; a build output may hold only regular files, directories and symlinks. Change the build so it leaves no fifo in the output directory')

    const big = await build({ build: ['sh', '-c', 'mkdir -p out && for i in 1 2 3; do head -c 2000 /dev/zero > out/part$i; done'] }, { limits: { ...LIMITS, maxOutputBytes: 4096 } })
    expect(big.ok === false && big.reason).toContain('larger than the limit of 4096 bytes')
    // One file beyond the limit is stopped as it is written (RLIMIT_FSIZE).
    const bigFile = await build({ build: ['sh', '-c', 'mkdir -p out && head -c 5000 /dev/zero > out/big'] }, { limits: { ...LIMITS, maxOutputBytes: 4096 } })
    expect(bigFile.ok === false && bigFile.reason).toContain('exited with status 153; status 153 means a file reached the limit of 4096 bytes (the recipe\'s maxOutputBytes)')
  })

  it('throws for problems of the node, not of the build', async () => {
    const unfetched = new GitMirror({ url: join(root, 'repo'), dir: join(root, 'no-mirror.git') })
    const workDir = join(await temp.make(), 'w')
    const err = await runBuild({
      repoId: 'demo', commit, ref: 'refs/heads/main', mirror: unfetched, workDir,
      recipe: { build: ['true'], output: 'out', outputKind: 'dir' }, limits: LIMITS, sandbox: 'none'
    }).catch((e: unknown) => e)
    expect(isQuorateError(err, 'GIT_FAILED')).toBe(true)
    expect(existsSync(workDir)).toBe(false)

    // No bubblewrap on PATH: the node must not quietly build without the sandbox it asked for.
    const path = process.env.PATH
    process.env.PATH = '/nonexistent'
    const noSandbox = await build({}, { sandbox: 'bwrap' }).catch((e: unknown) => e).finally(() => { process.env.PATH = path })
    expect(isQuorateError(noSandbox, 'SANDBOX_UNAVAILABLE')).toBe(true)
    expect((noSandbox as Error).message).toBe('bubblewrap is not installed (no bwrap on PATH); install it (apt-get install bubblewrap); or set "sandbox": "none" in the node config to build without isolation')

    const busy = await temp.make()
    await mkdir(join(busy, 'leftover'))
    await expect(build({}, { workDir: busy })).rejects.toThrow(/not empty/)
    expect(await readdir(busy)).toEqual(['leftover'])
  })
})
