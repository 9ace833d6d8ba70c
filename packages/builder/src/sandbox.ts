import { lstatSync, readlinkSync } from 'node:fs'
import { access, constants as fsConstants } from 'node:fs/promises'
import { join } from 'node:path'
import { runCollect } from './child-process.js'

/** The fixed paths every node's build sees (DESIGN.md "Builds"). */
export const SANDBOX_SRC = '/build/src'
export const SANDBOX_HOME = '/build/home'
/** Builds run as this uid/gid inside the sandbox (mapped to the node's own user outside). */
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
/** Name resolution for the fetch phase only. */
const ETC_NETWORK_FILES = ['/etc/resolv.conf', '/etc/gai.conf']

export interface SandboxLayout {
  /** Network on (fetch phase) or off (build phase). */
  network: boolean
  /** Host directory bound read-write at /build/src (the working directory). */
  src?: string
  /** Host directory bound read-write at /build/home. */
  home?: string
  /** Host directory holding generated passwd, group and hosts files for /etc. */
  etcDir?: string
  tmpBytes?: number
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
    '--hostname', 'quorate-build',
    '--perms', '0755', '--dir', '/etc',
    '--perms', '0755', '--dir', '/build'
  )
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
  if (layout.etcDir !== undefined) {
    for (const name of ['passwd', 'group', 'hosts']) args.push('--ro-bind', join(layout.etcDir, name), `/etc/${name}`)
  }
  args.push(
    '--proc', '/proc',
    '--dev', '/dev',
    '--size', String(layout.tmpBytes ?? SANDBOX_TMP_BYTES), '--tmpfs', '/tmp'
  )
  if (layout.src !== undefined) args.push('--bind', layout.src, SANDBOX_SRC)
  if (layout.home !== undefined) args.push('--bind', layout.home, SANDBOX_HOME)
  // The root is bubblewrap's own tmpfs: make it read-only so nothing outside the binds is writable.
  args.push('--remount-ro', '/')
  args.push('--chdir', layout.src !== undefined ? SANDBOX_SRC : '/')
  return args
}

/** Contents of the generated /etc files: one unprivileged build user, and loopback names. */
export function sandboxEtcFiles (): Record<'passwd' | 'group' | 'hosts', string> {
  return {
    passwd: `build:x:${SANDBOX_UID}:${SANDBOX_GID}:Quorate build:${SANDBOX_HOME}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`,
    group: `build:x:${SANDBOX_GID}:\nnogroup:x:65534:\n`,
    hosts: '127.0.0.1 localhost quorate-build\n::1 localhost ip6-localhost ip6-loopback\n'
  }
}

let detected: Promise<string | null> | undefined

/**
 * The path of a bubblewrap that can actually create the build sandbox here, or null. Checks
 * `bwrap --version` and runs `true` inside the same sandbox a build gets. A success is cached
 * per process; a failure is checked again next time (bubblewrap may have been installed since).
 */
export async function findBwrap (): Promise<string | null> {
  detected ??= probeBwrap()
  const found = await detected
  if (found === null) detected = undefined
  return found
}

async function probeBwrap (): Promise<string | null> {
  const bwrap = await findOnPath('bwrap', process.env.PATH ?? BUILD_PATH)
  if (bwrap === null) return null
  const env = { PATH: BUILD_PATH }
  try {
    const version = await runCollect([bwrap, '--version'], { env, timeoutMs: 10_000 })
    if (version.code !== 0) return null
    const trial = await runCollect([bwrap, ...bwrapArgs({ network: false }), '--', 'true'], { env, timeoutMs: 10_000 })
    return trial.code === 0 ? bwrap : null
  } catch {
    return null
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
