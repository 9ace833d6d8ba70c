import { describe, it, expect, beforeAll } from 'vitest'
import { join } from 'node:path'
import { DEFAULT_RECIPE_LIMITS, type RecipeLimits } from '@quorate/core'
import { createBuildCgroup, diskUsage } from '../src/containment.js'
import { sandboxedBuildFixture, processesWith, execFileP } from './helpers.js'

// Builds that try to exhaust the host: a fork bomb, an endless file, memory, an escaped
// process. These need a host where the node (root here) can create cgroups with the pids and
// memory controllers; without them a fork bomb as root is not contained (see the README), so
// the first test checks that precondition and the others would not be safe to run.
const LIMITS: RecipeLimits = { ...DEFAULT_RECIPE_LIMITS, timeoutSeconds: 20, maxLogBytes: 64 * 1024 }
const MiB = 1024 * 1024

describe('resource containment', () => {
  const { build, workDir: newWorkDir } = sandboxedBuildFixture('quorate-contain', LIMITS)
  let cgroups = false
  beforeAll(async () => {
    const probe = await createBuildCgroup({ maxProcesses: 8, memoryBytes: 64 * MiB })
    cgroups = probe !== null
    await probe?.remove()
  })

  /** This process's build cgroups still on the host (they must all be removed after each build). */
  const leftoverCgroups = async (): Promise<string> => {
    const { stdout } = await execFileP('find', ['/sys/fs/cgroup', '-maxdepth', '6', '-type', 'd', '-name', `quorate-build-${process.pid}-*`])
    return stdout
  }

  it('runs each build in its own cgroup here, and removes it afterwards', async () => {
    const outcome = await build({ build: ['sh', '-c', 'mkdir out && cat /proc/self/cgroup > out/cgroup'] }, { sandbox: 'none' })
    if (!outcome.ok) throw new Error(outcome.reason)
    expect(outcome.fingerprint.limits).toBe('cgroup')
    expect(await leftoverCgroups()).toBe('')
  })

  it('stops a fork bomb at the process limit with a clear reason, leaving nothing running', async () => {
    // Never run a fork bomb that nothing would stop (see the README's "what is not covered").
    expect(cgroups, 'cgroups with pids and memory controllers are needed to run this test safely').toBe(true)
    if (!cgroups) return
    const marker = `quorate-forkbomb-${process.pid}-${Date.now()}`
    const started = Date.now()
    const outcome = await build({ build: ['bash', '-c', 'bomb() { bomb | bomb & }; bomb; sleep 60', marker] }, { limits: { ...LIMITS, maxProcesses: 64 } })
    const elapsed = Date.now() - started
    expect(outcome.ok).toBe(false)
    if (outcome.ok) return
    expect(outcome.reason).toBe("the build tried to run more than 64 processes at once (the recipe's maxProcesses); every process of the build was killed")
    expect(outcome.timedOut).toBe(false)
    expect(outcome.exitStatus).toBeNull()
    expect(elapsed).toBeLessThan(10_000) // not the 20 s timeout
    expect(outcome.log.tail).toContain('quorate: build phase stopped: the build tried to run more than 64 processes')
    expect(await processesWith(marker)).toEqual([])
    expect(await leftoverCgroups()).toBe('')
  })

  it('stops a build that writes without end, long before the disk fills', async () => {
    const limits = { ...LIMITS, maxOutputBytes: 20 * MiB }
    // One endless file: RLIMIT_FSIZE stops the writer at the limit.
    const oneFile = await build({ build: ['sh', '-c', 'mkdir out && cat /dev/zero > out/endless'] }, { limits })
    expect(oneFile.ok === false && oneFile.reason).toBe(
      'the build command ["sh","-c","mkdir out && cat /dev/zero > out/endless"] exited with status 153; status 153 means a file reached the limit of 20971520 bytes (the recipe\'s maxOutputBytes); see the end of the build log')

    // Endless 1 MiB files, none over the per-file limit: the watchdog sees the work dir grow.
    const workDir = newWorkDir()
    const started = Date.now()
    const manyFiles = await build({ build: ['sh', '-c', 'mkdir -p junk && i=0; while :; do i=$((i+1)); head -c 1048576 /dev/zero > junk/$i; done'] }, { limits, workDir, keepWorkDir: true })
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(manyFiles.ok === false && manyFiles.reason).toBe(
      "the build wrote more than 20971520 bytes (the recipe's maxOutputBytes) to its work directory; every process of the build was killed")
    const written = await diskUsage(join(workDir, 'src', 'junk'))
    expect(written).toBeGreaterThan(20 * MiB)
    expect(written).toBeLessThan(1024 * MiB) // stopped within a few polls
  })

  it('stops a build whose processes together exceed the memory limit', async () => {
    // Each process stays under the per-process RLIMIT_DATA; only the cgroup sees the total.
    const hog = 'x=$(head -c 40000000 /dev/zero | tr "\\0" a); sleep 30'
    const outcome = await build({ build: ['sh', '-c', `for i in 1 2 3 4; do sh -c '${hog}' & done; wait`] }, { limits: { ...LIMITS, memoryBytes: 96 * MiB } })
    expect(outcome.ok === false && outcome.reason).toBe(
      `the build used more than ${96 * MiB} bytes of memory (the recipe's memoryBytes) and the kernel killed a process; every process of the build was killed`)
  })

  it('leaves no process running when a grandchild escapes with setsid, with or without the sandbox', async () => {
    for (const sandbox of ['bwrap', 'none'] as const) {
      const marker = `quorate-escape-${sandbox}-${process.pid}-${Date.now()}`
      const outcome = await build({ build: ['sh', '-c', `setsid sh -c "sleep 1000; : ${marker}" </dev/null >/dev/null 2>&1 & mkdir out; sleep 0.2`] }, { sandbox })
      expect(outcome.ok, sandbox).toBe(true)
      expect(await processesWith(marker), sandbox).toEqual([])
    }
    expect(await leftoverCgroups()).toBe('')
  })
})
