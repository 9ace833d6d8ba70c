import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, rm, writeFile, open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { DEFAULT_RECIPE_LIMITS, isQuorateError, type RecipeLimits } from '@quorate/core'
import { GitMirror, prepareBuildArea, resolveBuildUser, runBuild } from '../src/index.js'
import { commitFiles, makeRepo } from './helpers.js'

// The node's disk filling up is the node's trouble, never the build's: no signed failure,
// the job waits. A build that fills its own work-directory quota fails by its own limit.
// A real, small file system: a tmpfs mounted for the test (tests run as root here).
const MiB = 1024 * 1024
const LIMITS: RecipeLimits = { ...DEFAULT_RECIPE_LIMITS, timeoutSeconds: 30, maxOutputBytes: 64 * MiB }

describe('a full disk on the node', () => {
  let root: string
  let disk: string
  let area: string
  let mirror: GitMirror
  let commit: string

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'quorate-enospc-'))
    await chmod(root, 0o755)
    disk = join(root, 'disk')
    await mkdir(disk)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=700m,mode=0755', 'tmpfs', disk])
    area = await prepareBuildArea({ user: resolveBuildUser(), dataDir: join(root, 'data'), defaultDir: join(disk, 'work'), preferred: join(disk, 'builds') })
    const repo = await makeRepo(join(root, 'repo'))
    commit = await commitFiles(repo, { 'in.txt': 'x\n' }, 'p', 1_700_000_000)
    mirror = new GitMirror({ url: repo, dir: join(root, 'mirror.git') })
    await mirror.fetch()
  })
  afterAll(async () => {
    try { execFileSync('umount', ['-l', disk]) } catch {}
    await rm(root, { recursive: true, force: true })
  })

  const build = async (script: string, workDir = join(area, randomUUID())): Promise<Awaited<ReturnType<typeof runBuild>>> => await runBuild({
    repoId: 'demo', commit, ref: 'refs/heads/main', mirror,
    workDir,
    recipe: { build: ['sh', '-c', script], output: 'out', outputKind: 'dir' },
    limits: LIMITS,
    sandbox: 'bwrap'
  })

  /** Fills the disk from outside the build until `leaveBytes` remain free. */
  async function fill (leaveBytes: number): Promise<string> {
    const file = join(disk, `filler-${randomUUID()}`)
    const df = execFileSync('df', ['-B1', '--output=avail', disk], { encoding: 'utf8' }).trim().split('\n')[1]
    const bytes = Math.max(0, Number(df) - leaveBytes)
    const fh = await open(file, 'w')
    const chunk = Buffer.alloc(MiB)
    for (let done = 0; done < bytes; done += chunk.length) await fh.write(chunk, 0, Math.min(chunk.length, bytes - done))
    await fh.close()
    return file
  }

  it('waits (NODE_TROUBLE, nothing signed) when the disk has less room than the build may use', async () => {
    const filler = await fill(300 * MiB)
    try {
      const err = await build('mkdir out; echo hi > out/a').catch((e: unknown) => e)
      expect(isQuorateError(err, 'NODE_TROUBLE')).toBe(true)
      expect((err as Error).message).toMatch(/disk has \d+ MiB free .* free disk space .* runs when there is room/)
    } finally {
      await rm(filler)
    }
    // Space is back: the same build runs.
    const ok = await build('mkdir out; echo hi > out/a')
    expect(ok.ok).toBe(true)
  })

  it('is the node\'s trouble when something else fills the disk while a build runs', async () => {
    const workDir = join(area, randomUUID())
    // The build waits until the disk was filled from outside (a file appears in its checkout), then writes a modest file.
    const running = build(`mkdir out; i=0; while [ $i -lt 300 ] && ! [ -e go ]; do i=$((i+1)); sleep 0.1; done; head -c ${8 * MiB} /dev/zero > out/data`, workDir)
    const marker = join(workDir, 'src', 'go')
    for (let i = 0; i < 100; i++) {
      if (existsSync(join(workDir, 'src', 'in.txt'))) break
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    const filler = await fill(MiB)
    await writeFile(marker, '')
    try {
      const err = await running.catch((e: unknown) => e)
      expect(isQuorateError(err, 'NODE_TROUBLE')).toBe(true)
      expect((err as Error).message).toMatch(/node's disk is full while running the build phase.*nothing was signed/)
    } finally {
      await rm(filler)
      await rm(marker, { force: true })
    }
  })

  it('is the build\'s own failure when the build writes past its work-directory quota', async () => {
    const outcome = await build(`mkdir -p out junk; i=0; while :; do i=$((i+1)); head -c ${MiB} /dev/zero > junk/$i || exit 1; done`)
    expect(outcome.ok).toBe(false)
    expect(outcome.ok === false && outcome.reason).toMatch(/wrote more than 67108864 bytes \(the recipe's maxOutputBytes\)/)
  })
})
