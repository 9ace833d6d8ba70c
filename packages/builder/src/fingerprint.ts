import { lstat, readFile, readlink } from 'node:fs/promises'
import { join } from 'node:path'
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
  /**
   * The pinned build root the build ran in (recipe.root): its manifest digest, the index digest
   * the recipe named (when it named one), the platform and the root's own OS name. Absent for a
   * build on the host's toolchain.
   */
  root?: { image: string, manifestDigest: string, indexDigest?: string, platform: string, os: string }
}

/** The part of a build root the fingerprint needs (a BuildRoot fits). */
export interface FingerprintRoot { image: string, dir: string, manifestDigest: string, indexDigest?: string, platform: string }

/** Compilers worth naming in every fingerprint: toolchain differences are the usual cause of disputes. */
const TOOLCHAIN = ['cc', 'gcc']

type HostFacts = Pick<EnvironmentFingerprint, 'os' | 'kernel' | 'arch' | 'cpuModel'>

let hostFacts: Promise<HostFacts> | undefined
const versions = new Map<string, Promise<string | null>>()

/**
 * The environment fingerprint for a recipe. Host facts and each tool's version are looked up
 * once per process. Under bwrap, `--version` runs inside the sandbox (with no network, no
 * checkout), because a recipe from the repository can name any program.
 */
export async function environmentFingerprint (recipe: Pick<Recipe, 'fetch' | 'build'>, sandbox: 'bwrap' | 'none', root?: FingerprintRoot): Promise<EnvironmentFingerprint> {
  hostFacts ??= readHostFacts()
  const names = ['git']
  if (sandbox === 'bwrap') names.push('bwrap')
  for (const argv of [recipe.fetch, recipe.build]) {
    const name = argv?.[0]
    if (name !== undefined && !names.includes(name)) names.push(name)
  }
  for (const name of TOOLCHAIN) if (!names.includes(name)) names.push(name)
  // Under a root, recipe tools run in the root; the cache is per root.
  const where = root !== undefined && sandbox === 'bwrap' ? root.manifestDigest : 'host'
  const tools: Record<string, string> = {}
  await Promise.all(names.map(async name => {
    // git and bwrap run outside the sandbox (bwrap is the sandbox); recipe tools inside it.
    const inSandbox = sandbox === 'bwrap' && name !== 'git' && name !== 'bwrap'
    const key = `${inSandbox ? `bwrap@${where}` : 'none'}:${name}`
    let v = versions.get(key)
    if (v === undefined) {
      v = toolVersion(name, inSandbox, inSandbox ? root : undefined)
      versions.set(key, v)
    }
    const version = await v
    if (version !== null) tools[name] = version
  }))
  const fp: EnvironmentFingerprint = { ...await hostFacts, sandbox, tools: sortKeys(tools) }
  if (root !== undefined) {
    fp.root = {
      image: root.image,
      manifestDigest: root.manifestDigest,
      ...(root.indexDigest !== undefined ? { indexDigest: root.indexDigest } : {}),
      platform: root.platform,
      os: await rootOsName(root.dir)
    }
  }
  return fp
}

/** PRETTY_NAME of a root's os-release, read without following a link out of the root. */
async function rootOsName (dir: string): Promise<string> {
  for (const rel of ['etc/os-release', 'usr/lib/os-release']) {
    try {
      let path = join(dir, rel)
      const st = await lstat(path)
      if (st.isSymbolicLink()) {
        const target = await readlink(path)
        path = target.startsWith('/') ? join(dir, target) : join(path, '..', target)
        if (!path.startsWith(dir + '/')) continue
        if ((await lstat(path)).isSymbolicLink()) continue
      }
      const m = /^PRETTY_NAME=(.*)$/m.exec(await readFile(path, 'utf8'))
      if (m !== null) return m[1].trim().replace(/^(["'])(.*)\1$/, '$2')
    } catch {
      // try the next place
    }
  }
  return 'unknown'
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

/** First non-empty line of `NAME --version` when NAME is a program on the build PATH (of the root, with one) and exits 0. */
async function toolVersion (name: string, inSandbox: boolean, root?: FingerprintRoot): Promise<string | null> {
  let command: string[]
  if (inSandbox && root !== undefined) {
    // Looked up by the shell inside the root: host paths mean nothing there.
    command = ['/bin/sh', '-c', 'command -v "$1" >/dev/null || exit 127; exec "$1" --version', 'sh', name]
  } else {
    const hostTool = name === 'bwrap' || (name === 'git' && !inSandbox)
    const path = await findOnPath(name, hostTool ? (process.env.PATH ?? BUILD_PATH) : BUILD_PATH)
    if (path === null) return null
    command = [path, '--version']
  }
  let argv = command
  if (inSandbox) {
    const user = resolveBuildUser()
    const tools = await probeSandbox(user)
    if (typeof tools === 'string') return null
    argv = sandboxLaunchArgv({ tools, user, bwrapArgs: bwrapArgs({ network: false, root: root?.dir }), command })
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
