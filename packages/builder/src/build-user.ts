import { createHash } from 'node:crypto'
import { chmod, chown, lchown, lstat, mkdir, readdir, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { QuorateError } from '@quorate/core'

/**
 * The host user a build runs as. A node running as root never builds as root: user namespaces
 * map the sandbox's uid 1000 to whoever starts bubblewrap, and for root that is host uid 0,
 * which passes the permission checks of /proc/sys and other root-owned files. So a root node
 * starts every build process under an unprivileged uid/gid of its own (DEFAULT_ROOT_BUILD_ID
 * unless the node config names one); any other node builds under its own uid.
 */
export interface BuildUser {
  uid: number
  gid: number
  /** True when the node is root and drops to uid/gid for the build (with `setpriv`). */
  drop: boolean
}

/** The host uid and gid a root node builds as by default: no account, no files, no privileges. */
export const DEFAULT_ROOT_BUILD_ID = 50999

/** The build user for this process, from the node config's optional `sandboxUser`. */
export function resolveBuildUser (configured?: { uid: number, gid: number }): BuildUser {
  const uid = process.getuid?.() ?? 0
  const gid = process.getgid?.() ?? 0
  if (uid !== 0) {
    if (configured !== undefined && (configured.uid !== uid || configured.gid !== gid)) {
      throw new QuorateError('CONFIG_INVALID',
        `sandboxUser: ${configured.uid}:${configured.gid} needs a node running as root; this node runs as ${uid}:${gid} and builds under its own uid (remove "sandboxUser", or run the node as root)`)
    }
    return { uid, gid, drop: false }
  }
  const chosen = configured ?? { uid: DEFAULT_ROOT_BUILD_ID, gid: DEFAULT_ROOT_BUILD_ID }
  if (chosen.uid === 0 || chosen.gid === 0) {
    throw new QuorateError('CONFIG_INVALID', 'sandboxUser: builds must never run as host uid or gid 0; choose an unused unprivileged uid and gid, e.g. {"uid": 50999, "gid": 50999}')
  }
  return { uid: chosen.uid, gid: chosen.gid, drop: true }
}

/**
 * The directory a node's build work directories go in. Under a root node the build user must
 * reach it (every ancestor searchable) and reach nothing else of the data directory, so it is
 * `preferred` (the node config's buildDir) if given, else a directory of its own under the
 * system temp dir, named after the data directory: `quorate-builds-<hash>`, root-owned, 0711
 * (searchable, not listable). A non-root node keeps `defaultDir` (inside its data directory).
 */
export async function prepareBuildArea (o: { user: BuildUser, dataDir: string, defaultDir: string, preferred?: string }): Promise<string> {
  if (!o.user.drop) {
    const dir = o.preferred ?? o.defaultDir
    await mkdir(dir, { recursive: true, mode: 0o700 })
    return dir
  }
  const dir = o.preferred !== undefined
    ? resolve(o.preferred)
    : join(tmpdir(), `quorate-builds-${createHash('sha256').update(resolve(o.dataDir)).digest('hex').slice(0, 16)}`)
  await mkdir(dirname(dir), { recursive: true })
  try {
    await mkdir(dir, { mode: 0o711 })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  // It may sit in a world-writable directory: only a real directory of root's, not writable by others, will do.
  const st = await lstat(dir)
  if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new QuorateError('SANDBOX_UNAVAILABLE',
      `the build directory ${dir} is not a directory owned by root and writable only by it; remove it, or set "buildDir" in the node config to a directory of root's`, { dir })
  }
  await chmod(dir, 0o711)
  await assertSearchable(dir, o.user)
  return dir
}

/** Creates `dir` (a build's work dir) for the build user: owned by it, 0700. */
export async function makeBuildDir (dir: string, user: BuildUser): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 })
  await chmod(dir, 0o755)
  if (user.drop) await chown(dir, user.uid, user.gid)
}

/** Hands a tree the node wrote (the checkout) to the build user, without following symlinks. */
export async function giveTree (path: string, user: BuildUser): Promise<void> {
  if (!user.drop) return
  await lchown(path, user.uid, user.gid)
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const child = join(dir, e.name)
      await lchown(child, user.uid, user.gid)
      if (e.isDirectory()) await walk(child)
    }
  }
  if ((await lstat(path)).isDirectory()) await walk(path)
}

/** Throws unless every directory from / down to `dir` is searchable by the build user. */
export async function assertSearchable (dir: string, user: BuildUser): Promise<void> {
  let at = resolve(dir)
  const chain: string[] = []
  for (;;) {
    chain.unshift(at)
    const up = dirname(at)
    if (up === at) break
    at = up
  }
  for (const d of chain) {
    const st = await stat(d)
    const ok = st.uid === user.uid ? (st.mode & 0o100) !== 0 : st.gid === user.gid ? (st.mode & 0o010) !== 0 : (st.mode & 0o001) !== 0
    if (!ok) {
      throw new QuorateError('SANDBOX_UNAVAILABLE',
        `the build user (uid ${user.uid}) cannot reach ${dir}: ${d} is not searchable by it (mode ${(st.mode & 0o777).toString(8)}); set "buildDir" in the node config to a directory whose parents are searchable (chmod o+x), or leave it unset`, { dir })
    }
  }
}
