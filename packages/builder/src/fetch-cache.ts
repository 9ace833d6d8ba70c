import { createHash } from 'node:crypto'
import { constants as fsConstants } from 'node:fs'
import { chmod, chown, lstat, mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { QuorateError, isRepoId } from '@quorate/core'
import { assertSearchable, type BuildUser } from './build-user.js'
import { removeTree } from './remove-tree.js'

/**
 * A fetch-phase cache per repository and build root, for npm only (node config `fetchCache`).
 *
 * Only a cache whose entries the package manager re-verifies on every use against the
 * lockfile's integrity hashes qualifies: npm's cacache stores tarballs content-addressed
 * (`_cacache/content-v2/<algo>/<hex digest>`) and `npm ci` reads them by the lockfile's
 * `integrity`. Cargo's extracted sources and pip's wheel cache are not checked on use, so one
 * hostile commit could poison every later build: they are never cached.
 *
 * npm's own check is not enough on its own. A fetch phase runs the commit's code with the cache
 * writable, and when npm finds a cached tarball corrupted it fetches it again but extracts over
 * what the corrupted copy already wrote (an extra file survives); an index entry can send a
 * tarball URL to other content. So the node itself, in its own code while no build process
 * runs, keeps only content files whose bytes hash to their name (SHA-512/384/256; never SHA-1,
 * where collisions can be made), and removes the index, temp files, logs, `_npx` and anything
 * else, before and after every fetch phase. What a later build can read from the cache is then
 * exactly the bytes its lockfile pins, which it would have downloaded anyway.
 */
export interface FetchCacheInit {
  /** The directory holding every cache (`<dir>/<repoId>/<host | root-<hex>>/`); made 0711 on first use. */
  dir: string
  /** The user builds run as: it owns each cache's npm directory (the sandbox writes it). */
  user: BuildUser
  /** Bytes one cache may keep after a fetch phase; the oldest entries go first (default 2 GiB). */
  maxBytes?: number
  /** A cache no build used for this long is removed (default 30). */
  maxAgeDays?: number
  /** Clock (tests). */
  now?: () => number
}

/** The node config's `fetchCache`. */
export interface FetchCacheConfig {
  npm: boolean
  maxBytes: number
  maxAgeDays: number
  /** Where the caches live (default: beside the build area, or in the data directory). */
  dir?: string
}

export const DEFAULT_FETCH_CACHE_MAX_BYTES = 2 * 1024 ** 3
export const DEFAULT_FETCH_CACHE_MAX_AGE_DAYS = 30

/** What the node found and kept in a cache. */
export interface FetchCacheReport {
  /** Content entries kept. */
  entries: number
  /** Their bytes. */
  bytes: number
  /** Entries under `content-v2` removed: bytes that do not hash to their name, SHA-1 content, links, anything not a content file. */
  rejected: number
  /** Entries removed to stay within maxBytes. */
  evicted: number
  /** Time spent checking, ms. */
  ms: number
}

/** One build's use of a cache, between acquire and release (the cache is locked meanwhile). */
export interface FetchCacheLease {
  /** Host directory to bind read-write at npm's default cache (`$HOME/.npm`) in the fetch phase only. */
  npmDir: string
  /** The cache as the fetch phase found it (after the node's check). */
  before: FetchCacheReport
  /** Checks and trims the cache again (the fetch phase's processes must be gone) and unlocks it; idempotent. */
  release: () => Promise<FetchCacheReport>
}

/** Kept digest algorithms: cacache names content by the strongest hash of the integrity. */
const KEPT_ALGORITHMS: Record<string, number> = { sha512: 128, sha384: 96, sha256: 64 }
const STATE_VERSION = 1
/** After trimming, a cache holds at most this share of maxBytes (so not every build trims). */
const LOW_WATER = 0.8

interface EntryState {
  size: number
  ino: string
  mtimeNs: string
  ctimeNs: string
  addedAt: number
}

interface CacheState {
  version: number
  lastUsed: number
  entries: Record<string, EntryState>
}

export class FetchCache {
  readonly dir: string
  readonly maxBytes: number
  readonly maxAgeDays: number
  private readonly user: BuildUser
  private readonly now: () => number
  private readonly locks = new Map<string, Promise<void>>()

  constructor (init: FetchCacheInit) {
    this.dir = init.dir
    this.user = init.user
    this.maxBytes = init.maxBytes ?? DEFAULT_FETCH_CACHE_MAX_BYTES
    this.maxAgeDays = init.maxAgeDays ?? DEFAULT_FETCH_CACHE_MAX_AGE_DAYS
    this.now = init.now ?? Date.now
  }

  /** The cache directory of a repository under a build root (`sha256:…` manifest digest) or the host's tools. */
  keyDir (repoId: string, rootDigest?: string): string {
    if (!isRepoId(repoId)) throw new QuorateError('USAGE', `"${repoId}" is not a repository id`, { repoId })
    let root = 'host'
    if (rootDigest !== undefined) {
      const m = /^sha256:([0-9a-f]{64})$/.exec(rootDigest)
      if (m === null) throw new QuorateError('USAGE', `"${rootDigest}" is not a sha256 manifest digest`, { rootDigest })
      root = `root-${m[1]}`
    }
    return join(this.dir, repoId, root)
  }

  /**
   * Locks the cache of (repoId, root) for one fetch phase, waiting while another build of the
   * same repository and root holds it, then checks it (see the module comment). Aborting
   * `signal` while waiting rejects.
   */
  async acquire (repoId: string, rootDigest?: string, signal?: AbortSignal): Promise<FetchCacheLease> {
    const keyDir = this.keyDir(repoId, rootDigest)
    const prev = this.locks.get(keyDir) ?? Promise.resolve()
    let unlock!: () => void
    const mine = new Promise<void>(resolve => { unlock = resolve })
    const chained = prev.then(async () => await mine)
    this.locks.set(keyDir, chained)
    const done = (): void => {
      unlock()
      if (this.locks.get(keyDir) === chained) this.locks.delete(keyDir)
    }
    try {
      await untilAborted(prev, signal)
    } catch (err) {
      // Our turn still comes after prev; pass it straight on.
      void prev.then(done)
      throw err
    }
    let before: FetchCacheReport
    try {
      await this.makeKeyDir(keyDir)
      // bwrap, started as the build user, binds npm/ from here.
      await assertSearchable(keyDir, this.user).catch((err: Error) => {
        throw new QuorateError('SANDBOX_UNAVAILABLE', `${err.message.replace(/; set "buildDir".*$/, '')}; set "fetchCache.dir" in the node config to a directory whose parents are searchable (chmod o+x), or leave it unset`, { dir: keyDir })
      })
      before = await this.check(keyDir)
    } catch (err) {
      done()
      throw err
    }
    let released: Promise<FetchCacheReport> | undefined
    return {
      npmDir: join(keyDir, 'npm'),
      before,
      release: async () => {
        released ??= (async () => {
          try {
            const report = await this.check(keyDir)
            await this.prune(keyDir).catch(() => [])
            return report
          } finally {
            done()
          }
        })()
        return await released
      }
    }
  }

  /**
   * Removes caches no build used for maxAgeDays (not `except`, nor one in use).
   * Returns the directories removed.
   */
  async prune (except?: string): Promise<string[]> {
    const removed: string[] = []
    const cutoff = this.now() - this.maxAgeDays * 86_400_000
    for (const repo of await readdir(this.dir).catch(() => [] as string[])) {
      if (!isRepoId(repo)) continue
      for (const key of await readdir(join(this.dir, repo)).catch(() => [] as string[])) {
        const keyDir = join(this.dir, repo, key)
        if (keyDir === except || this.locks.has(keyDir)) continue
        const state = await this.readState(keyDir)
        if (state.lastUsed >= cutoff || this.locks.has(keyDir)) continue
        await rm(keyDir, { recursive: true, force: true })
        removed.push(keyDir)
      }
    }
    return removed
  }

  private async makeKeyDir (keyDir: string): Promise<void> {
    // The node's directories: searchable by the build user (bwrap, started as it, binds npm/ from
    // here), listable and writable by the node only.
    for (const d of [this.dir, join(keyDir, '..'), keyDir]) {
      await mkdir(d, { recursive: true, mode: 0o711 })
      const st = await lstat(d)
      if (!st.isDirectory()) throw new QuorateError('CONFIG_INVALID', `the fetch cache directory ${d} is not a directory; remove it or set "fetchCache.dir"`, { dir: d })
      await chmod(d, 0o711)
    }
  }

  private async readState (keyDir: string): Promise<CacheState> {
    try {
      const s = JSON.parse(await readFile(join(keyDir, 'state.json'), 'utf8')) as CacheState
      if (s.version === STATE_VERSION && typeof s.entries === 'object' && s.entries !== null && typeof s.lastUsed === 'number') return s
    } catch {
      // missing or unreadable: every entry is hashed again
    }
    return { version: STATE_VERSION, lastUsed: 0, entries: {} }
  }

  /**
   * The node's check of one cache, run while no build process can touch it: keep only content
   * files that hash to their name, drop everything else, then trim to maxBytes.
   */
  private async check (keyDir: string): Promise<FetchCacheReport> {
    try {
      return await this.checkTree(keyDir)
    } catch (err) {
      // A fetch phase can take its own files' permissions away (a node that is not root builds
      // as itself): then the cache starts again empty rather than fail every later build.
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'EACCES' && code !== 'EPERM') throw err
      await removeTree(join(keyDir, 'npm'))
      const report = await this.checkTree(keyDir)
      return { ...report, rejected: report.rejected + 1 }
    }
  }

  private async checkTree (keyDir: string): Promise<FetchCacheReport> {
    const t = performance.now()
    const state = await this.readState(keyDir)
    const npm = join(keyDir, 'npm')
    const report: FetchCacheReport = { entries: 0, bytes: 0, rejected: 0, evicted: 0, ms: 0 }
    await this.keepOnlyDir(npm, 0o700)
    await removeAllBut(npm, ['_cacache'])
    const cacache = join(npm, '_cacache')
    await this.keepOnlyDir(cacache, 0o755)
    await removeAllBut(cacache, ['content-v2'])
    const content = join(cacache, 'content-v2')
    await this.keepOnlyDir(content, 0o755)
    report.rejected += await removeAllBut(content, Object.keys(KEPT_ALGORITHMS))
    const kept: Record<string, EntryState> = {}
    for (const algo of await readdir(content)) {
      const hexLength = KEPT_ALGORITHMS[algo]
      if (!await isRealDir(join(content, algo))) { await rm(join(content, algo), { recursive: true, force: true }); report.rejected++; continue }
      for (const a of await readdir(join(content, algo))) {
        const aDir = join(content, algo, a)
        if (!/^[0-9a-f]{2}$/.test(a) || !await isRealDir(aDir)) { await rm(aDir, { recursive: true, force: true }); report.rejected++; continue }
        for (const b of await readdir(aDir)) {
          const bDir = join(aDir, b)
          if (!/^[0-9a-f]{2}$/.test(b) || !await isRealDir(bDir)) { await rm(bDir, { recursive: true, force: true }); report.rejected++; continue }
          for (const rest of await readdir(bDir)) {
            const file = join(bDir, rest)
            const rel = `${algo}/${a}/${b}/${rest}`
            const st = await lstat(file, { bigint: true })
            const ok = rest.length === hexLength - 4 && /^[0-9a-f]+$/.test(rest) && st.isFile() && st.nlink === 1n
            const now: Omit<EntryState, 'addedAt'> = { size: Number(st.size), ino: String(st.ino), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs) }
            const known = state.entries[rel]
            const unchanged = known !== undefined && known.size === now.size && known.ino === now.ino && known.mtimeNs === now.mtimeNs && known.ctimeNs === now.ctimeNs
            if (ok && (unchanged || await hashFile(file, algo) === `${a}${b}${rest}`)) {
              kept[rel] = { ...now, addedAt: unchanged ? known.addedAt : this.now() }
              continue
            }
            await rm(file, { recursive: true, force: true })
            report.rejected++
          }
          await removeIfEmpty(bDir)
        }
        await removeIfEmpty(aDir)
      }
    }
    // Oldest first out, down to LOW_WATER of maxBytes.
    let bytes = Object.values(kept).reduce((n, e) => n + e.size, 0)
    if (bytes > this.maxBytes) {
      const order = Object.entries(kept).sort(([p, x], [q, y]) => x.addedAt - y.addedAt || (p < q ? -1 : 1))
      for (const [rel, e] of order) {
        if (bytes <= this.maxBytes * LOW_WATER) break
        await rm(join(content, rel), { force: true })
        delete kept[rel]
        bytes -= e.size
        report.evicted++
      }
    }
    report.entries = Object.keys(kept).length
    report.bytes = bytes
    const next: CacheState = { version: STATE_VERSION, lastUsed: this.now(), entries: kept }
    const tmp = join(keyDir, 'state.json.tmp')
    await writeFile(tmp, JSON.stringify(next), { mode: 0o600 })
    await rename(tmp, join(keyDir, 'state.json'))
    report.ms = Math.round(performance.now() - t)
    return report
  }

  /** Makes `dir` a real directory (a symlink or file there is removed) owned by the build user. */
  private async keepOnlyDir (dir: string, mode: number): Promise<void> {
    if (!await isRealDir(dir)) {
      await rm(dir, { recursive: true, force: true })
      await mkdir(dir, { mode })
    }
    if (this.user.drop) await chown(dir, this.user.uid, this.user.gid)
    await chmod(dir, mode)
  }
}

async function removeIfEmpty (dir: string): Promise<void> {
  if ((await readdir(dir)).length === 0) await rm(dir, { recursive: true, force: true })
}

async function isRealDir (path: string): Promise<boolean> {
  const st = await lstat(path).catch(() => null)
  return st !== null && st.isDirectory()
}

/** Removes every entry of `dir` not named in `keep`; returns how many went. */
async function removeAllBut (dir: string, keep: string[]): Promise<number> {
  let removed = 0
  for (const name of await readdir(dir)) {
    if (keep.includes(name)) continue
    await rm(join(dir, name), { recursive: true, force: true })
    removed++
  }
  return removed
}

/** Hex digest of a regular file, never following a symlink nor blocking on a FIFO. */
async function hashFile (path: string, algo: string): Promise<string> {
  const hash = createHash(algo)
  const fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK)
  try {
    for await (const chunk of fh.createReadStream({ autoClose: false })) hash.update(chunk as Buffer)
  } finally {
    await fh.close()
  }
  return hash.digest('hex')
}

async function untilAborted (p: Promise<void>, signal?: AbortSignal): Promise<void> {
  if (signal === undefined) return await p
  if (signal.aborted) throw new QuorateError('BUILD_FAILED', 'the build was cancelled while it waited for its fetch cache', { aborted: true })
  let onAbort!: () => void
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(new QuorateError('BUILD_FAILED', 'the build was cancelled while it waited for its fetch cache', { aborted: true }))
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    await Promise.race([p, aborted])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/**
 * Reads the node config's `fetchCache`: `{"npm": true, "maxBytes"?: N, "maxAgeDays"?: N, "dir"?: PATH}`.
 * Undefined (or `npm: false`) means no cache.
 */
export function parseFetchCacheConfig (raw: unknown, field: string, resolvePath: (p: string) => string = p => p): FetchCacheConfig | undefined {
  if (raw === undefined) return undefined
  const bad = (sub: string, msg: string): never => { throw new QuorateError('CONFIG_INVALID', `${field}${sub}: ${msg}`, { field: `${field}${sub}` }) }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) bad('', 'must be an object such as {"npm": true, "maxBytes": 2147483648}')
  const r = raw as Record<string, unknown>
  const known = ['npm', 'maxBytes', 'maxAgeDays', 'dir']
  for (const k of Object.keys(r)) {
    if (!known.includes(k)) {
      bad(`.${k}`, `unknown field; allowed: ${known.join(', ')} (only npm's cache is kept between builds: cargo's and pip's caches are not re-verified against the lockfile on use)`)
    }
  }
  if (r.npm !== undefined && typeof r.npm !== 'boolean') bad('.npm', 'must be true or false')
  const positive = (k: string, def: number, max: number): number => {
    const v = r[k] ?? def
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0 || v > max) bad(`.${k}`, `must be a whole number from 1 to ${max}`)
    return v as number
  }
  const maxBytes = positive('maxBytes', DEFAULT_FETCH_CACHE_MAX_BYTES, Number.MAX_SAFE_INTEGER)
  const maxAgeDays = positive('maxAgeDays', DEFAULT_FETCH_CACHE_MAX_AGE_DAYS, 36_500)
  if (r.dir !== undefined && (typeof r.dir !== 'string' || r.dir === '')) bad('.dir', 'must be a directory path')
  if (r.npm !== true) return undefined
  return { npm: true, maxBytes, maxAgeDays, ...(r.dir !== undefined ? { dir: resolvePath(r.dir as string) } : {}) }
}
