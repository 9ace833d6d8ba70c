import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFile } from 'node:child_process'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { DEFAULT_RECIPE_LIMITS, type Recipe } from '@quorate/core'
import { commitFiles, makeRepo } from './helpers.js'

// Two builder hosts that differ in everything reprotest varies must agree on a reproducible
// project, and must disagree on one that embeds the clock or (without the sandbox) its path.
// Each host is a separate Node process running the compiled package (dist/, built here first).
// Needs root (for `unshare --uts` and `setpriv`), bubblewrap, util-linux and coreutils.

const execFileP = promisify(execFile)
const here = dirname(fileURLToPath(import.meta.url))
const repoRoot = join(here, '..', '..', '..')
const OTHER_UID = 4242

const BUILD_SH = String.raw`set -eu
# What the build sees, raw, goes to the log only (logs may differ between honest builders).
echo "seen: nproc=$(nproc) umask=$(umask) host=$(uname -n) pwd=$(pwd) home=$HOME user=$(id -un) tz=$TZ lang=$LANG now=$(date +%s)"
mkdir -p out/obj
# Parallel jobs by CPU count, finishing in any order; the result must not depend on either.
n=$(nproc); i=0
for f in $(ls data); do (tr a-z A-Z < "data/$f" > "out/obj/$f.o") & i=$((i+1)); [ $((i % n)) -ne 0 ] || wait; done; wait
{
  echo "built: $(date -u -d "@$SOURCE_DATE_EPOCH" '+%Y-%m-%d %H:%M:%S')"
  echo "commit time, local: $(date -d "@$SOURCE_DATE_EPOCH" '+%Y-%m-%d %H:%M %Z')"
  echo "commit date: $(git log -1 --format=%cd --date=local)"
  echo "source: $(pwd)"
  echo "host: $(uname -n)"
  echo "user: $(id -un) $(id -u)"
  echo "home: $HOME"
  echo "parallel: $([ "$n" -ge 1 ] && echo yes)"
  echo "sorted: $(printf '%s\n' b B a A é _ | sort | tr '\n' ' ')"
  echo "number: $(printf '%.2f' 3.5)"
  echo "umask: $(umask)"
} > out/BUILDINFO
touch out/obj/*
# The checkout's file modes go into the tar: they must not depend on the node's umask.
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner --format=gnu -cf out/data.tar data
`

interface HostReport {
  host: { uid: number, hostname: string, umask: string, nproc: number, TZ?: string, LANG?: string, LC_ALL?: string, HOME?: string, extraEnv: number, startedAt: number }
  builds: Array<{ name: string, ok: boolean, narSha256?: string, fileListSha256?: string, reason?: string, log: string }>
}

const BUILDS: Array<{ name: string, recipe: Recipe, sandbox: 'bwrap' | 'none' }> = [
  { name: 'reproducible', recipe: { build: ['sh', 'build.sh'], output: 'out', outputKind: 'dir' }, sandbox: 'bwrap' },
  { name: 'clock', recipe: { build: ['sh', '-c', 'mkdir out && date +%s%N > out/stamp'], output: 'out', outputKind: 'dir' }, sandbox: 'bwrap' },
  { name: 'path', recipe: { build: ['sh', '-c', 'mkdir out && pwd > out/where'], output: 'out', outputKind: 'dir' }, sandbox: 'none' }
]

describe('agreement across hosts', () => {
  let root: string
  let commit: string

  beforeAll(async () => {
    // The hosts import dist/: make sure it is current (a no-op after `npm test`'s own tsc -b).
    await execFileP(process.execPath, [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', join(repoRoot, 'packages', 'builder')], { cwd: repoRoot })
    root = await mkdtemp(join(tmpdir(), 'quorate-agree-'))
    await chmod(root, 0o755)
    const origin = await makeRepo(join(root, 'origin'))
    await mkdir(join(origin, 'data'))
    for (const [name, text] of [['a.txt', 'alpha\n'], ['b.txt', 'bravo\n'], ['c.txt', 'charlie\n'], ['d.txt', 'delta\n'], ['e.txt', 'echo\n']]) {
      await writeFile(join(origin, 'data', name), text)
    }
    await writeFile(join(origin, 'data', 'tool.sh'), '#!/bin/sh\necho tool\n')
    await chmod(join(origin, 'data', 'tool.sh'), 0o755)
    commit = await commitFiles(origin, { 'build.sh': BUILD_SH }, 'a reproducible project', 1_712_345_678)
  })

  afterAll(async () => {
    if (root !== undefined) await rm(root, { recursive: true, force: true })
  })

  const runHost = async (launcher: string[], env: Record<string, string>, origin: string, dataDir: string): Promise<HostReport> => {
    const request = { origin, dataDir, commit, limits: { ...DEFAULT_RECIPE_LIMITS, timeoutSeconds: 30, maxLogBytes: 64 * 1024 }, builds: BUILDS }
    const { stdout } = await execFileP(launcher[0], [...launcher.slice(1), process.execPath, join(here, 'agreement-host.mjs'), JSON.stringify(request)],
      { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, timeout: 50_000 })
    return JSON.parse(stdout) as HostReport
  }

  it('two hosts that differ in every way reprotest varies agree on a reproducible project, and not on one that embeds the time or its path', async () => {
    // Host A: root, umask 022, all CPUs, UTC, C locale, a short data directory path.
    const homeA = join(root, 'a', 'home')
    await mkdir(homeA, { recursive: true })
    const a = await runHost(['/bin/sh', '-c', 'umask 022 && exec "$@"', 'sh'],
      { TZ: 'UTC', LANG: 'C', LC_ALL: 'C', HOME: homeA },
      join(root, 'origin'), join(root, 'a', 'd'))

    // Host B: another user, umask 077, one CPU, its own hostname, another time zone and locale,
    // a deeper data directory, a HOME of its own, unrelated variables (one that a careless
    // runner would pass through: SOURCE_DATE_EPOCH), and a later wall-clock second.
    const hostB = join(root, 'host-b')
    await mkdir(join(hostB, 'home'), { recursive: true })
    await execFileP('cp', ['-a', join(root, 'origin'), join(hostB, 'origin')]) // its own copy: git refuses repositories of other users
    await execFileP('chown', ['-R', `${OTHER_UID}:${OTHER_UID}`, hostB])
    const wait = a.host.startedAt + 1100 - Date.now()
    if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
    const noise: Record<string, string> = {}
    for (let i = 0; i < 20; i++) noise[`QUORATE_HOST_NOISE_${i}`] = `value-${i}-${Math.random()}`
    const b = await runHost([
      'unshare', '--uts', '--', '/bin/sh', '-c', 'hostname quorate-host-b && umask 077 && exec "$@"', 'sh',
      'taskset', '-c', '0',
      'setpriv', `--reuid=${OTHER_UID}`, `--regid=${OTHER_UID}`, '--clear-groups', '--'
    ], {
      TZ: 'Pacific/Kiritimati', LANG: 'fr_FR.UTF-8', LC_ALL: 'fr_FR.UTF-8', HOME: join(hostB, 'home'),
      SOURCE_DATE_EPOCH: '1', CFLAGS: '-O0 -g', MAKEFLAGS: '-j7', GIT_DIR: '/nonexistent', ...noise
    }, join(hostB, 'origin'), join(hostB, 'var', 'lib', 'quorate', 'data', 'deeper', 'still'))

    // The hosts really differ.
    expect(a.host).toMatchObject({ uid: 0, umask: '0022', TZ: 'UTC', LANG: 'C', extraEnv: 0, nproc: availableParallelism() })
    expect(b.host).toMatchObject({ uid: OTHER_UID, umask: '0077', hostname: 'quorate-host-b', TZ: 'Pacific/Kiritimati', LANG: 'fr_FR.UTF-8', extraEnv: 20, nproc: 1 })
    expect(a.host.hostname).not.toBe(b.host.hostname)
    expect(a.host.HOME).not.toBe(b.host.HOME)
    expect(b.host.startedAt - a.host.startedAt).toBeGreaterThanOrEqual(1100)

    const byName = (r: HostReport, name: string): HostReport['builds'][number] => {
      const build = r.builds.find(x => x.name === name)
      if (build === undefined || !build.ok) throw new Error(`${name} failed: ${JSON.stringify(build)}`)
      return build
    }
    const ra = byName(a, 'reproducible')
    const rb = byName(b, 'reproducible')
    // Inside, both builds saw the same paths, host, user and environment; only the CPU count
    // (and the clock) differed, and the project normalised those.
    for (const [report, nproc] of [[ra, a.host.nproc], [rb, 1]] as const) {
      expect(report.log).toMatch(new RegExp(`seen: nproc=${nproc} umask=0022 host=quorate-build pwd=/build/src home=/build/home user=build tz=UTC lang=C.UTF-8 now=\\d+`))
    }
    expect(ra.narSha256).toMatch(/^[0-9a-f]{64}$/)
    expect(rb.narSha256).toBe(ra.narSha256)
    expect(rb.fileListSha256).toBe(ra.fileListSha256)

    // A project that embeds the time disagrees, sandbox or not.
    expect(byName(b, 'clock').narSha256).not.toBe(byName(a, 'clock').narSha256)
    // Without the sandbox, the build path is each node's own data directory.
    expect(byName(b, 'path').narSha256).not.toBe(byName(a, 'path').narSha256)
  })
})
