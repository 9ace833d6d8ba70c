import { afterEach, beforeAll } from 'vitest'
import { GitMirror, runBuild, prepareBuildArea, resolveBuildUser } from '../src/index.js'
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm, mkdir, writeFile, symlink, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

export const execFileP = promisify(execFile)

/** A temp dir per test; `cleanup()` removes every dir made through it. */
export function tempDirs (): { make: (prefix?: string) => Promise<string>, cleanup: () => Promise<void> } {
  const made: string[] = []
  return {
    make: async (prefix = 'quorate-builder-') => {
      const dir = await mkdtemp(join(tmpdir(), prefix))
      made.push(dir)
      return dir
    },
    cleanup: async () => {
      for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true })
    }
  }
}

/** A tree node for golden fixtures: file contents with an explicit mode, a symlink target, or a directory. */
export type TreeSpec =
  | { file: string | Uint8Array, mode: number }
  | { symlink: string }
  | { dir: Record<string, TreeSpec> }

/** Writes `spec` at `path` with explicit modes, so the result does not depend on the umask. */
export async function writeTree (path: string, spec: TreeSpec): Promise<void> {
  if ('file' in spec) {
    await mkdir(dirname(path), { recursive: true })
    await writeFile(path, spec.file)
    await chmod(path, spec.mode)
  } else if ('symlink' in spec) {
    await mkdir(dirname(path), { recursive: true })
    await symlink(spec.symlink, path)
  } else {
    await mkdir(path, { recursive: true })
    await chmod(path, 0o755)
    for (const [name, child] of Object.entries(spec.dir)) await writeTree(join(path, name), child)
  }
}

export async function git (cwd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await execFileP('git', args, {
    cwd,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: cwd,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_AUTHOR_NAME: 'Test',
      GIT_AUTHOR_EMAIL: 'test@example.org',
      GIT_COMMITTER_NAME: 'Test',
      GIT_COMMITTER_EMAIL: 'test@example.org',
      ...env
    }
  })
  return stdout.trim()
}

/** Creates a repository with branch main; returns its path. */
export async function makeRepo (dir: string): Promise<string> {
  await mkdir(dir, { recursive: true })
  await git(dir, ['init', '-q', '-b', 'main', dir])
  return dir
}

/** Writes files, commits them with a fixed committer date, returns the commit sha. */
export async function commitFiles (repo: string, files: Record<string, string>, message: string, unixTime: number): Promise<string> {
  for (const [name, content] of Object.entries(files)) {
    await mkdir(dirname(join(repo, name)), { recursive: true })
    await writeFile(join(repo, name), content)
  }
  await git(repo, ['add', '-A'])
  const date = `@${unixTime} +0000`
  await git(repo, ['commit', '-q', '--allow-empty', '-m', message], { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date })
  return await git(repo, ['rev-parse', 'HEAD'])
}

/** pids of processes whose command line contains `marker` (pgrep never lists itself). */
export async function processesWith (marker: string): Promise<string[]> {
  try {
    const { stdout } = await execFileP('pgrep', ['-f', marker])
    return stdout.split('\n').filter(l => l.length > 0)
  } catch {
    return [] // pgrep exits 1 when nothing matches
  }
}

/**
 * A one-commit repository and its fetched mirror for a describe block, and a `build` that runs
 * the recipe on it under bubblewrap in a fresh work dir (shared by the sandbox and containment tests).
 */
export function sandboxedBuildFixture (prefix: string, limits: import('@quorate/core').RecipeLimits): {
  temp: ReturnType<typeof tempDirs>
  build: (recipe: Partial<import('@quorate/core').Recipe>, extra?: Partial<import('../src/index.js').BuildRequest>) => Promise<import('../src/index.js').BuildOutcome>
  /** A fresh work dir path where the build user can reach it (as a node would choose). */
  workDir: () => string
} {
  const temp = tempDirs()
  let mirror: import('../src/index.js').GitMirror
  let commit: string
  let area: string
  afterEach(temp.cleanup)
  beforeAll(async () => {
    const root = await mkdtemp(join(tmpdir(), `${prefix}-repo-`))
    // Where a node would put its build work dirs: reachable by the build user (a root node's is not in its data dir).
    area = await prepareBuildArea({ user: resolveBuildUser(), dataDir: join(root, 'data'), defaultDir: join(root, 'data', 'work') })
    const repo = await makeRepo(join(root, 'repo'))
    commit = await commitFiles(repo, { 'in.txt': 'input\n' }, 'project', 1_700_000_000)
    mirror = new GitMirror({ url: repo, dir: join(root, 'mirror.git') })
    await mirror.fetch()
    return async () => {
      await rm(root, { recursive: true, force: true })
      await rm(area, { recursive: true, force: true })
    }
  })
  const build = async (recipe: Partial<import('@quorate/core').Recipe>, extra: Partial<import('../src/index.js').BuildRequest> = {}): Promise<import('../src/index.js').BuildOutcome> => await runBuild({
    repoId: 'demo',
    commit,
    ref: 'refs/heads/main',
    mirror,
    workDir: join(area, randomUUID()),
    recipe: { build: ['true'], output: 'out', outputKind: 'dir', ...recipe },
    limits,
    sandbox: 'bwrap',
    ...extra
  })
  return { temp, build, workDir: () => join(area, randomUUID()) }
}
