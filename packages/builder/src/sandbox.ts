import { lstatSync, readlinkSync } from 'node:fs'
import { access, constants as fsConstants } from 'node:fs/promises'
import { join } from 'node:path'
import { QuorateError } from '@quorate/core'
import { resolveBuildUser, type BuildUser } from './build-user.js'
import { runCollect } from './child-process.js'
import { FETCH_DNS_ADDRESS, fetchRoutesScript, pastaArgs, type FetchNetworkPolicy } from './fetch-network.js'

/** The fixed paths every node's build sees (DESIGN.md "Builds"). */
export const SANDBOX_SRC = '/build/src'
export const SANDBOX_HOME = '/build/home'
/** npm's default cache under SANDBOX_HOME, where a fetch phase finds the node's fetch cache (fetch-cache.ts). */
export const SANDBOX_NPM_CACHE = '/build/home/.npm'
/** Builds run as this uid/gid inside the sandbox (mapped to the build user outside: see build-user.ts). */
export const SANDBOX_UID = 1000
export const SANDBOX_GID = 1000
/** Size limit of the sandbox's private /tmp. */
export const SANDBOX_TMP_BYTES = 256 * 1024 * 1024
/** PATH inside builds, with or without the sandbox. */
export const BUILD_PATH = '/usr/local/bin:/usr/bin:/bin'

/** Top-level system directories; merged-/usr systems have some of them as symlinks, recreated as such. */
const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']

/**
 * The only host files under /etc a build sees, read-only. Not /etc/ssl as a whole: its
 * private/ holds keys, and with a root node the sandbox user maps to root outside.
 */
const ETC_FILES = [
  '/etc/alternatives',
  '/etc/ssl/certs',
  '/etc/ssl/openssl.cnf',
  '/etc/ca-certificates',
  '/etc/ca-certificates.conf',
  '/etc/ld.so.cache',
  '/etc/ld.so.conf',
  '/etc/ld.so.conf.d',
  '/etc/nsswitch.conf',
  '/etc/os-release'
]
/** Name resolution for the fetch phase only (resolv.conf is generated: see sandboxEtcFiles). */
const ETC_NETWORK_FILES = ['/etc/gai.conf']

export interface SandboxLayout {
  /** Network on (fetch phase) or off (build phase). */
  network: boolean
  /** Host directory bound read-write at /build/src (the working directory). */
  src?: string
  /** Host directory bound read-write at /build/home. */
  home?: string
  /**
   * The fetch phase's npm cache (fetch-cache.ts): a host directory bound read-write at npm's
   * default cache, `$HOME/.npm` (/build/home/.npm). Never given to the build phase.
   */
  npmCache?: string
  /** Host directory holding generated passwd, group, hosts and resolv.conf files for /etc. */
  etcDir?: string
  tmpBytes?: number
  /**
   * A pinned build root (an unpacked OCI image, see build-root.ts) mounted read-only as `/`
   * instead of the host's system paths; its mount points (/build/src, /etc/passwd …) exist.
   */
  root?: string
}

/**
 * bubblewrap arguments (everything before the command) for DESIGN.md's sandbox: all namespaces
 * unshared (network kept only for the fetch phase), an unprivileged uid/gid, no capabilities,
 * killed with its parent, a new session, fresh /proc and /dev, a size-limited /tmp, read-only
 * binds of an allowlist of system paths, and the checkout and home as the only writable binds.
 */
export function bwrapArgs (layout: SandboxLayout): string[] {
  const args = ['--unshare-all']
  if (layout.network) args.push('--share-net')
  args.push(
    '--unshare-user', '--uid', String(SANDBOX_UID), '--gid', String(SANDBOX_GID),
    '--cap-drop', 'ALL',
    '--die-with-parent',
    '--new-session',
    '--hostname', 'quorate-build'
  )
  if (layout.root !== undefined) {
    // The whole `/` is the pinned image, read-only: no host system path is visible.
    args.push('--ro-bind', layout.root, '/')
  } else {
    args.push('--perms', '0755', '--dir', '/etc', '--perms', '0755', '--dir', '/build')
    for (const dir of SYSTEM_DIRS) {
      const link = symlinkTarget(dir)
      if (link !== null) args.push('--symlink', link, dir)
      else args.push('--ro-bind-try', dir, dir)
    }
    for (const path of ETC_FILES) {
      const link = path === '/etc/os-release' ? symlinkTarget(path) : null
      if (link !== null) args.push('--symlink', link, path)
      else args.push('--ro-bind-try', path, path)
    }
    if (layout.network) for (const path of ETC_NETWORK_FILES) args.push('--ro-bind-try', path, path)
  }
  if (layout.etcDir !== undefined) {
    for (const name of ['passwd', 'group', 'hosts']) args.push('--ro-bind', join(layout.etcDir, name), `/etc/${name}`)
    if (layout.network) args.push('--ro-bind', join(layout.etcDir, 'resolv.conf'), '/etc/resolv.conf')
  }
  args.push(
    '--proc', '/proc',
    // Kernel settings stay read-only whatever the build's uid maps to (defence in depth: the
    // build user is unprivileged on the host already; /sys is not mounted at all, and
    // /proc/sysrq-trigger is root's, mode 0200, where the kernel has it).
    '--ro-bind', '/proc/sys', '/proc/sys',
    '--dev', '/dev',
    '--size', String(layout.tmpBytes ?? SANDBOX_TMP_BYTES), '--tmpfs', '/tmp'
  )
  if (layout.src !== undefined) args.push('--bind', layout.src, SANDBOX_SRC)
  if (layout.home !== undefined) args.push('--bind', layout.home, SANDBOX_HOME)
  if (layout.npmCache !== undefined) {
    if (!layout.network || layout.home === undefined) throw new QuorateError('USAGE', 'the npm cache is mounted only in the fetch phase, inside the build home')
    args.push('--bind', layout.npmCache, SANDBOX_NPM_CACHE)
  }
  // The root is bubblewrap's own tmpfs: make it read-only so nothing outside the binds is writable.
  args.push('--remount-ro', '/')
  args.push('--chdir', layout.src !== undefined ? SANDBOX_SRC : '/')
  return args
}

/** Contents of the generated /etc files: one unprivileged build user, and loopback names. */
export function sandboxEtcFiles (): Record<'passwd' | 'group' | 'hosts' | 'resolv.conf', string> {
  return {
    'resolv.conf': `nameserver ${FETCH_DNS_ADDRESS}\noptions edns0\n`,
    passwd: `build:x:${SANDBOX_UID}:${SANDBOX_GID}:Quorate build:${SANDBOX_HOME}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`,
    group: `build:x:${SANDBOX_GID}:\nnogroup:x:65534:\n`,
    hosts: '127.0.0.1 localhost quorate-build\n::1 localhost ip6-localhost ip6-loopback\n'
  }
}

/** The host programs a sandboxed build is started through. */
export interface SandboxTools {
  bwrap: string
  /** Closes every inherited descriptor above 2 before anything else runs (see CLOSE_INHERITED_FDS). */
  bash: string
  /** Drops a root node to the build user; null when the node is not root. */
  setpriv: string | null
}

/**
 * Run first by bash in every build process chain: closes every descriptor above 2, whatever
 * opened it (native addons such as LevelDB open files without close-on-exec, and Node's
 * child_process has no hook between fork and exec), then execs the rest of the chain.
 */
export const CLOSE_INHERITED_FDS = 'for f in /proc/self/fd/*; do n=${f##*/}; case $n in 0|1|2) ;; *) [ -L "/proc/self/fd/$n" ] && exec {n}>&- ;; esac; done; exec "$@"'

export interface LaunchOptions {
  tools: SandboxTools
  user: BuildUser
  /** Run as the node's own user before privileges are dropped (joining the build's cgroup). */
  enrol?: string[]
  /** The fetch phase's user-mode network: pasta's argv and the route script run inside it. */
  network?: { pasta: string, policy: FetchNetworkPolicy }
  bwrapArgs: string[]
  command: string[]
}

/**
 * The whole argv of a sandboxed process: close inherited descriptors, join the cgroup, drop to
 * the build user (root nodes), enter the fetch phase's own network namespace (fetch phase),
 * then bubblewrap and the command.
 */
export function sandboxLaunchArgv (o: LaunchOptions): string[] {
  const argv = [o.tools.bash, '-c', CLOSE_INHERITED_FDS, 'quorate-build', ...(o.enrol ?? [])]
  if (o.user.drop) {
    if (o.tools.setpriv === null) throw new QuorateError('SANDBOX_UNAVAILABLE', 'setpriv (util-linux) is needed to build as an unprivileged user under a root node; install util-linux')
    argv.push(o.tools.setpriv, `--reuid=${o.user.uid}`, `--regid=${o.user.gid}`, '--clear-groups', '--')
  }
  if (o.network !== undefined) argv.push(...pastaArgs(o.network.pasta), '/bin/sh', '-c', fetchRoutesScript(o.network.policy), 'sh')
  argv.push(o.tools.bwrap, ...o.bwrapArgs, '--', ...o.command)
  return argv
}

/** What the fetch phase needs on the host: pasta (passt) and ip (iproute2). */
export async function findFetchNetworkTools (): Promise<{ pasta: string } | { problem: string }> {
  const path = process.env.PATH ?? BUILD_PATH
  const pasta = await findOnPath('pasta', `${path}:/usr/sbin:/sbin`)
  const ip = await findOnPath('ip', `${path}:/usr/sbin:/sbin`)
  if (pasta === null || ip === null) {
    return { problem: `the fetch phase runs in its own network namespace and needs ${pasta === null ? 'pasta (apt-get install passt)' : ''}${pasta === null && ip === null ? ' and ' : ''}${ip === null ? 'ip (apt-get install iproute2)' : ''} on the node's host` }
  }
  return { pasta }
}

const probes = new Map<string, Promise<SandboxTools | string>>()

/**
 * The programs that can actually create the build sandbox here for `user`, or a sentence
 * saying why not (with bubblewrap's own error). Runs `true` through the same launch chain a
 * build gets. A success is cached per process and user; a failure is checked again next time.
 */
export async function probeSandbox (user: BuildUser = resolveBuildUser()): Promise<SandboxTools | string> {
  const key = `${user.uid}:${user.gid}:${String(user.drop)}`
  let p = probes.get(key)
  if (p === undefined) probes.set(key, p = probeTools(user))
  const found = await p
  if (typeof found === 'string') probes.delete(key)
  return found
}

/** The path of a usable bubblewrap for this node's default build user, or null. */
export async function findBwrap (): Promise<string | null> {
  const found = await probeSandbox()
  return typeof found === 'string' ? null : found.bwrap
}

async function probeTools (user: BuildUser): Promise<SandboxTools | string> {
  const path = process.env.PATH ?? BUILD_PATH
  const bwrap = await findOnPath('bwrap', path)
  if (bwrap === null) return 'bubblewrap is not installed (no bwrap on PATH); install it (apt-get install bubblewrap)'
  const bash = await findOnPath('bash', `${path}:/bin`)
  if (bash === null) return 'bash is needed to start builds with no inherited file descriptors; install it'
  const setpriv = user.drop ? await findOnPath('setpriv', `${path}:/usr/bin:/bin`) : null
  if (user.drop && setpriv === null) return 'setpriv (util-linux) is needed to build as an unprivileged user under a root node; install util-linux'
  const tools = { bwrap, bash, setpriv }
  const env = { PATH: BUILD_PATH }
  try {
    const version = await runCollect([bwrap, '--version'], { env, timeoutMs: 10_000 })
    if (version.code !== 0) return `"bwrap --version" failed: ${version.stderr.trim()}`
    const trial = await runCollect(sandboxLaunchArgv({ tools, user, bwrapArgs: bwrapArgs({ network: false }), command: ['true'] }), { env, timeoutMs: 10_000 })
    if (trial.code === 0) return tools
    const as = user.drop ? ` as the unprivileged build user ${user.uid}:${user.gid}` : ''
    return `bubblewrap cannot create the build sandbox here${as}: ${trial.stderr.trim().slice(0, 300) || `exit status ${String(trial.code)}`}; allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1 where it exists)`
  } catch (err) {
    return `bubblewrap could not be started: ${(err as Error).message}`
  }
}

/** 'bwrap' when bubblewrap is installed and can create namespaces here, else null. */
export async function detectSandbox (): Promise<'bwrap' | null> {
  return await findBwrap() === null ? null : 'bwrap'
}

/** The first executable `name` in a PATH-style list, or null. */
export async function findOnPath (name: string, path: string): Promise<string | null> {
  if (name.includes('/')) return null
  for (const dir of path.split(':')) {
    if (!dir.startsWith('/')) continue
    const candidate = join(dir, name)
    try {
      await access(candidate, fsConstants.X_OK)
      if (lstatSync(candidate).isDirectory()) continue
      return candidate
    } catch {
      // not here
    }
  }
  return null
}

function symlinkTarget (path: string): string | null {
  try {
    return lstatSync(path).isSymbolicLink() ? readlinkSync(path) : null
  } catch {
    return null
  }
}
