import { readFile } from 'node:fs/promises'
import { cpus, machine, release, type } from 'node:os'
import type { Recipe } from '@quorate/core'
import { runCollect } from './child-process.js'
import { BUILD_PATH, bwrapArgs, findOnPath, probeSandbox, sandboxLaunchArgv } from './sandbox.js'
import { resolveBuildUser } from './build-user.js'

/**
 * What a build ran on, for the attestation's internalParameters: builds that depend on the
 * CPU model (`-march=native`), the kernel or tool versions can then be told apart.
 */
export interface EnvironmentFingerprint {
  /** PRETTY_NAME from /etc/os-release. */
  os: string
  /** Kernel release (`uname -r`). */
  kernel: string
  /** Machine hardware name (`uname -m`). */
  arch: string
  cpuModel: string
  sandbox: 'bwrap' | 'none'
  /** First line of `--version` of git, of bwrap when sandboxed, and of argv[0] of fetch and build when found on the build PATH. */
  tools: Record<string, string>
  /**
   * How the build's limits were enforced (set by runBuild): 'cgroup' = totals for the whole
   * build (processes, memory) in its own control group; 'rlimit' = per-process limits only.
   */
  limits?: 'cgroup' | 'rlimit'
}

type HostFacts = Pick<EnvironmentFingerprint, 'os' | 'kernel' | 'arch' | 'cpuModel'>

let hostFacts: Promise<HostFacts> | undefined
const versions = new Map<string, Promise<string | null>>()

/**
 * The environment fingerprint for a recipe. Host facts and each tool's version are looked up
 * once per process. Under bwrap, `--version` runs inside the sandbox (with no network, no
 * checkout), because a recipe from the repository can name any program.
 */
export async function environmentFingerprint (recipe: Pick<Recipe, 'fetch' | 'build'>, sandbox: 'bwrap' | 'none'): Promise<EnvironmentFingerprint> {
  hostFacts ??= readHostFacts()
  const names = ['git']
  if (sandbox === 'bwrap') names.push('bwrap')
  for (const argv of [recipe.fetch, recipe.build]) {
    const name = argv?.[0]
    if (name !== undefined && !names.includes(name)) names.push(name)
  }
  const tools: Record<string, string> = {}
  await Promise.all(names.map(async name => {
    // git and bwrap run outside the sandbox (bwrap is the sandbox); recipe tools inside it.
    const inSandbox = sandbox === 'bwrap' && name !== 'git' && name !== 'bwrap'
    const key = `${inSandbox ? 'bwrap' : 'none'}:${name}`
    let v = versions.get(key)
    if (v === undefined) {
      v = toolVersion(name, inSandbox)
      versions.set(key, v)
    }
    const version = await v
    if (version !== null) tools[name] = version
  }))
  return { ...await hostFacts, sandbox, tools: sortKeys(tools) }
}

async function readHostFacts (): Promise<HostFacts> {
  let os = type()
  try {
    const text = await readFile('/etc/os-release', 'utf8')
    const m = /^PRETTY_NAME=(.*)$/m.exec(text)
    if (m !== null) os = m[1].trim().replace(/^(["'])(.*)\1$/, '$2')
  } catch {
    // no os-release: keep the kernel's name
  }
  return { os, kernel: release(), arch: machine(), cpuModel: cpus()[0]?.model.trim() ?? 'unknown' }
}

/** First non-empty line of `NAME --version` when NAME is a program on the build PATH and exits 0. */
async function toolVersion (name: string, inSandbox: boolean): Promise<string | null> {
  const hostTool = name === 'bwrap' || (name === 'git' && !inSandbox)
  const path = await findOnPath(name, hostTool ? (process.env.PATH ?? BUILD_PATH) : BUILD_PATH)
  if (path === null) return null
  let argv = [path, '--version']
  if (inSandbox) {
    const user = resolveBuildUser()
    const tools = await probeSandbox(user)
    if (typeof tools === 'string') return null
    argv = sandboxLaunchArgv({ tools, user, bwrapArgs: bwrapArgs({ network: false }), command: [path, '--version'] })
  }
  try {
    const r = await runCollect(argv, { env: { PATH: BUILD_PATH, HOME: '/nonexistent', LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8', TZ: 'UTC' }, timeoutMs: 10_000, maxOutputBytes: 64 * 1024 })
    if (r.code !== 0) return null
    const line = r.stdout.split('\n').map(l => l.trim()).find(l => l.length > 0)
    return line === undefined ? null : line.slice(0, 200)
  } catch {
    return null
  }
}

function sortKeys (o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
}
