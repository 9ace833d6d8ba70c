import { randomBytes } from 'node:crypto'
import { readFile, readdir, rmdir, lstat, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * How a build's totals are enforced: 'cgroup' when the node can create a control group per
 * build with the pids and memory controllers (cgroup v2, or v1 hierarchies), else 'rlimit'
 * (per-process limits only; see the README for what that leaves open).
 */
export type LimitsMechanism = 'cgroup' | 'rlimit'

/** One build's control group (one directory per controller on cgroup v1, one on v2). */
export interface BuildCgroup {
  readonly version: 1 | 2
  /** `cgroup.procs` files a process writes its pid to, to join the group (before it forks). */
  readonly procsFiles: string[]
  /** Whether a fork was refused because the group reached its process limit. */
  pidsLimitHit: () => Promise<boolean>
  /** Processes the kernel's OOM killer killed in the group (0 when unknown). */
  oomKills: () => Promise<number>
  /** Processes in the group now. */
  pids: () => Promise<number[]>
  /** SIGKILL to every process in the group, repeated until it is empty (or ~2 s passed). */
  kill: () => Promise<void>
  /** Kills what is left and removes the group. */
  remove: () => Promise<void>
}

interface Hierarchy { version: 1 | 2, dir: string }

const PREFIX = 'quorate-build-'
let counter = 0

/**
 * A fresh control group for one build, beneath the node's own (so the node's own limits still
 * apply to it), with `pids.max` = maxProcesses and a memory limit of memoryBytes; null when this
 * host does not let the node do that (no cgroup file system, a controller missing, not
 * delegated to the node's user): the caller then falls back to rlimits.
 */
export async function createBuildCgroup (limits: { maxProcesses: number, memoryBytes: number }): Promise<BuildCgroup | null> {
  const found = await findHierarchies()
  if (found === null) return null
  const name = `${PREFIX}${process.pid}-${++counter}-${randomBytes(4).toString('hex')}`
  const made: string[] = []
  const undo = async (): Promise<null> => {
    for (const dir of made) await rmdir(dir).catch(() => {})
    return null
  }
  try {
    if (found.version === 2) {
      const dir = join(found.v2.dir, name)
      await mkdir(dir)
      made.push(dir)
      await writeFile(join(dir, 'pids.max'), String(limits.maxProcesses))
      await writeFile(join(dir, 'memory.max'), String(limits.memoryBytes))
      await writeFile(join(dir, 'memory.swap.max'), '0').catch(() => {}) // no swap accounting: fine
      return v2Group(dir)
    }
    const pidsDir = join(found.pids.dir, name)
    const memoryDir = join(found.memory.dir, name)
    await mkdir(pidsDir)
    made.push(pidsDir)
    await mkdir(memoryDir)
    made.push(memoryDir)
    await writeFile(join(pidsDir, 'pids.max'), String(limits.maxProcesses))
    await writeFile(join(memoryDir, 'memory.limit_in_bytes'), String(limits.memoryBytes))
    await writeFile(join(memoryDir, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)).catch(() => {}) // without swap accounting
    return v1Group(pidsDir, memoryDir)
  } catch {
    return await undo()
  }
}

let hierarchies: Promise<{ version: 2, v2: Hierarchy } | { version: 1, pids: Hierarchy, memory: Hierarchy } | null> | undefined

/** Where the node's own cgroups are, once per process; null when no usable pids+memory pair exists. */
async function findHierarchies (): Promise<{ version: 2, v2: Hierarchy } | { version: 1, pids: Hierarchy, memory: Hierarchy } | null> {
  hierarchies ??= (async () => {
    let cgroupText: string, mountText: string
    try {
      cgroupText = await readFile('/proc/self/cgroup', 'utf8')
      mountText = await readFile('/proc/self/mountinfo', 'utf8')
    } catch {
      return null
    }
    const own = new Map<string, string>() // controller ('' for v2) → path
    for (const line of cgroupText.split('\n')) {
      const m = /^\d+:([^:]*):(.*)$/.exec(line)
      if (m === null) continue
      for (const c of m[1].split(',')) own.set(c, m[2])
    }
    const mounts: Array<{ root: string, point: string, type: string, options: string[] }> = []
    for (const line of mountText.split('\n')) {
      const [left, right] = line.split(' - ')
      if (right === undefined) continue
      const f = left.split(' ')
      const [type, , superOptions] = right.split(' ')
      mounts.push({ root: unescapeMount(f[3]), point: unescapeMount(f[4]), type, options: (superOptions ?? '').split(',') })
    }
    const dirFor = (mount: { root: string, point: string }, path: string): string =>
      join(mount.point, mount.root !== '/' && path.startsWith(mount.root) ? path.slice(mount.root.length) : path)

    // cgroup v2: usable when pids and memory are enabled for our own group's children.
    const v2Mount = mounts.find(m => m.type === 'cgroup2')
    const v2Path = own.get('')
    if (v2Mount !== undefined && v2Path !== undefined) {
      const dir = dirFor(v2Mount, v2Path)
      if (await v2Ready(dir)) return { version: 2 as const, v2: { version: 2 as const, dir } }
    }
    const v1 = (controller: string): Hierarchy | null => {
      const mount = mounts.find(m => m.type === 'cgroup' && m.options.includes(controller))
      const path = own.get(controller)
      return mount === undefined || path === undefined ? null : { version: 1, dir: dirFor(mount, path) }
    }
    const pids = v1('pids')
    const memory = v1('memory')
    if (pids === null || memory === null) return null
    for (const h of [pids, memory]) await removeStaleGroups(h.dir)
    return { version: 1 as const, pids, memory }
  })()
  return await hierarchies
}

async function v2Ready (dir: string): Promise<boolean> {
  try {
    const controllers = (await readFile(join(dir, 'cgroup.controllers'), 'utf8')).split(/\s+/)
    if (!controllers.includes('pids') || !controllers.includes('memory')) return false
    const enabled = (await readFile(join(dir, 'cgroup.subtree_control'), 'utf8')).split(/\s+/)
    if (!enabled.includes('pids') || !enabled.includes('memory')) {
      // Fails (EBUSY) when our own group holds processes and is not the root: then no v2.
      await writeFile(join(dir, 'cgroup.subtree_control'), '+pids +memory')
    }
    await removeStaleGroups(dir)
    return true
  } catch {
    return false
  }
}

/** Empty groups of node processes that no longer run (a crash between create and remove). */
async function removeStaleGroups (dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[])
  for (const name of names) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name)
    if (m === null || Number(m[1]) === process.pid || await alive(Number(m[1]))) continue
    await rmdir(join(dir, name)).catch(() => {})
  }
}

async function alive (pid: number): Promise<boolean> {
  return await lstat(`/proc/${pid}`).then(() => true, () => false)
}

function v2Group (dir: string): BuildCgroup {
  const pids = async (): Promise<number[]> => await readPids(join(dir, 'cgroup.procs'))
  return {
    version: 2,
    procsFiles: [join(dir, 'cgroup.procs')],
    pidsLimitHit: async () => (await readCounter(join(dir, 'pids.events'), 'max')) > 0,
    oomKills: async () => await readCounter(join(dir, 'memory.events'), 'oom_kill'),
    pids,
    kill: async () => {
      // cgroup.kill (Linux 5.14) kills atomically, new forks included; else one by one.
      await writeFile(join(dir, 'cgroup.kill'), '1').catch(() => {})
      await killAll(pids)
    },
    remove: async () => {
      await writeFile(join(dir, 'cgroup.kill'), '1').catch(() => {})
      await killAll(pids)
      await removeDir(dir)
    }
  }
}

function v1Group (pidsDir: string, memoryDir: string): BuildCgroup {
  const pids = async (): Promise<number[]> => [...new Set([
    ...await readPids(join(pidsDir, 'cgroup.procs')),
    ...await readPids(join(memoryDir, 'cgroup.procs'))
  ])]
  return {
    version: 1,
    procsFiles: [join(pidsDir, 'cgroup.procs'), join(memoryDir, 'cgroup.procs')],
    pidsLimitHit: async () => (await readCounter(join(pidsDir, 'pids.events'), 'max')) > 0,
    oomKills: async () => await readCounter(join(memoryDir, 'memory.oom_control'), 'oom_kill'),
    pids,
    kill: async () => { await killAll(pids) },
    remove: async () => {
      await killAll(pids)
      await removeDir(pidsDir)
      await removeDir(memoryDir)
    }
  }
}

/** Kills until the group is empty: with pids.max, a forking group shrinks with every round. */
async function killAll (pids: () => Promise<number[]>): Promise<void> {
  const until = Date.now() + 2000
  for (;;) {
    const list = await pids()
    if (list.length === 0 || Date.now() > until) return
    for (const pid of list) {
      try { process.kill(pid, 'SIGKILL') } catch { /* gone already */ }
    }
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** rmdir, retried while the last killed processes are still being reaped (EBUSY). */
async function removeDir (dir: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await rmdir(dir)
      return
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return
      if (code !== 'EBUSY' || i >= 100) throw err
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }
}

async function readPids (file: string): Promise<number[]> {
  const text = await readFile(file, 'utf8').catch(() => '')
  return text.split('\n').filter(l => l.length > 0).map(Number)
}

async function readCounter (file: string, key: string): Promise<number> {
  const text = await readFile(file, 'utf8').catch(() => '')
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text)
  return m === null ? 0 : Number(m[1])
}

function unescapeMount (s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

/**
 * Bytes of disk that the files under `dir` use (allocated blocks, like `du`; hard links once).
 * Bounded effort: stops counting once `stopAbove` is exceeded.
 */
export async function diskUsage (dir: string, stopAbove = Number.POSITIVE_INFINITY): Promise<number> {
  let total = 0
  const seen = new Set<string>()
  const walk = async (path: string): Promise<void> => {
    if (total > stopAbove) return
    let st
    try {
      st = await lstat(path, { bigint: false })
    } catch {
      return // removed while we looked
    }
    if (st.nlink > 1 && !st.isDirectory()) {
      const key = `${st.dev}:${st.ino}`
      if (seen.has(key)) return
      seen.add(key)
    }
    total += st.blocks * 512
    if (!st.isDirectory()) return
    let names: string[]
    try {
      names = await readdir(path)
    } catch {
      return
    }
    for (const name of names) await walk(join(path, name))
  }
  await walk(dir)
  return total
}
