import { createHash, randomUUID } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { spawn } from 'node:child_process'
import { chmod, chown, lchown, lstat, mkdir, open, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { isIP } from 'node:net'
import { dirname, join } from 'node:path'
import { QuorateError, parseRootImage, type RootImageRef } from '@quorate/core'
import { runCollect } from './child-process.js'
import { unpackLayers, type LayerSource } from './layer-extract.js'
import { BUILD_PATH, findOnPath } from './sandbox.js'

/**
 * Build roots (DESIGN.md "Builds", Build root): an OCI image named `<name>@sha256:<digest>`
 * is pulled with skopeo (or read from a local OCI layout), its index, manifest, config and
 * every layer checked against their digests, and its layers unpacked safely into a cache
 * keyed by the manifest digest, which builds mount read-only as `/`. A root that cannot be
 * pulled, verified or unpacked is a `ROOT_UNAVAILABLE` error: the node's trouble, never a
 * build failure.
 */

/** How the node reaches one registry (node config, never gossiped). */
export interface RegistryAccess {
  /** Plain HTTP / no TLS verification: allowed for loopback registries only. */
  insecure?: boolean
  /** Credentials; passed to skopeo in a private auth file, never on a command line or in a log. */
  username?: string
  password?: string
  /** Pull from this registry (host[:port]) instead; digests make a mirror safe. */
  mirror?: string
}

export interface BuildRootCacheInit {
  /** The cache directory (the node's, e.g. `<dataDir>/roots`). */
  dir: string
  /**
   * Registries (host[:port]) the node may pull from; roots from other registries are refused.
   * A function is asked at each pull (the policy can be reloaded).
   */
  allowedRegistries: string[] | (() => string[])
  registries?: Record<string, RegistryAccess>
  /** Offline sources: image name (as written before `@`) → OCI image layout directory. */
  layouts?: Record<string, string>
  /** Size bound of the unpacked roots together; unused roots are evicted beyond it (default 16 GiB). */
  maxBytes?: number
  /** Cap on an image's compressed size, config and layers (default 4 GiB). */
  maxImageBytes?: number
  /** Cap on an image's decompressed layers together (default 8 GiB). */
  maxUnpackedBytes?: number
  /** The OCI architecture to pick from an image index (default: this machine's). */
  architecture?: string
  /** Time allowed for one skopeo call (default 30 min). */
  pullTimeoutMs?: number
  /**
   * Unpack as this unprivileged host user (a node running as root): layers are unpacked by a
   * worker process under this uid/gid, so a flaw in the unpacker cannot write as root.
   */
  unpackUser?: { uid: number, gid: number }
}

/** An unpacked root, ready to mount. */
export interface BuildRoot {
  /** The image as the recipe names it. */
  image: string
  /** The host directory to mount read-only as `/`. */
  dir: string
  /** `sha256:…` of the image manifest that was unpacked. */
  manifestDigest: string
  /** `sha256:…` of the image index the recipe named, when it named one. */
  indexDigest?: string
  /** `linux/<arch>` of the manifest. */
  platform: string
  /** Bytes of the unpacked files. */
  bytes: number
}

export interface BuildRootLease extends BuildRoot {
  /** Lets eviction remove the root again once no build uses it. */
  release: () => void
}

const DEFAULTS = {
  maxBytes: 16 * 1024 ** 3,
  maxImageBytes: 4 * 1024 ** 3,
  maxUnpackedBytes: 8 * 1024 ** 3,
  pullTimeoutMs: 30 * 60_000
}
/** Bumped when the unpacked layout or the entry file changes: older entries are redone. */
const ENTRY_VERSION = 1
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json'])
const MANIFEST_TYPES = new Set(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'])
const LAYER_TYPES: Record<string, 'gzip' | 'none'> = {
  'application/vnd.oci.image.layer.v1.tar': 'none',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar': 'none',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'gzip',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'gzip'
}

interface Descriptor { mediaType?: string, digest: string, size: number, platform?: { os?: string, architecture?: string, variant?: string } }

interface EntryFile {
  version: number
  image: string
  manifestDigest: string
  indexDigest?: string
  platform: string
  bytes: number
  files: number
  /** SHA-256 over every unpacked path with its type, mode and size: a cheap check that the tree is whole. */
  treeDigest: string
}

/** The OCI name of this machine's architecture. */
export function ociArchitecture (arch: string = process.arch): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[arch] ?? arch
}

/** Whether `registry` (host[:port]) is a loopback address or name. */
export function isLoopbackRegistry (registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(1, registry.indexOf(']')) : registry.replace(/:[0-9]+$/, '')
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  return isIP(host) === 6 && (host === '::1' || /^0*:0*:0*:0*:0*:0*:0*:0*1$/.test(host))
}

function unavailable (ref: { image: string }, kind: string, why: string, fields: Record<string, unknown> = {}): QuorateError {
  return new QuorateError('ROOT_UNAVAILABLE', `build root ${ref.image}: ${why}`, { image: ref.image, kind, ...fields })
}

function checkDescriptor (d: unknown, what: string, ref: RootImageRef): Descriptor {
  const x = d as Record<string, unknown> | null
  if (x === null || typeof x !== 'object' || typeof x.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(x.digest) ||
    typeof x.size !== 'number' || !Number.isSafeInteger(x.size) || x.size < 0) {
    throw unavailable(ref, 'verify', `the ${what} descriptor is malformed (a sha256 digest and a size are required)`)
  }
  return x as unknown as Descriptor
}

async function sha256File (path: string): Promise<{ hex: string, size: number }> {
  const h = createHash('sha256')
  let size = 0
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    h.update(chunk as Buffer)
    size += (chunk as Buffer).length
  }
  return { hex: h.digest('hex'), size }
}

/** Where the bytes of an image come from: a registry through skopeo, or a local OCI layout. */
interface Source {
  /** Raw bytes of the manifest or index with this digest. */
  manifest: (digest: string) => Promise<Buffer>
  /** Makes every blob of `manifestDigest` available; returns a function from blob digest to file path. */
  blobs: (manifestDigest: string, scratch: string) => Promise<(digest: string) => string>
}

/**
 * A cache of unpacked build roots. One instance per node (one process per cache dir): it holds
 * the in-process locks that make concurrent builds of one root share a single pull and unpack.
 */
export class BuildRootCache {
  private readonly init: BuildRootCacheInit
  private readonly pending = new Map<string, Promise<BuildRoot>>()
  private readonly inUse = new Map<string, number>()
  private readonly checked = new Set<string>()
  /** The last error per image, for status displays. */
  readonly problems = new Map<string, { message: string, at: number }>()

  constructor (init: BuildRootCacheInit) {
    for (const [registry, access] of Object.entries(init.registries ?? {})) {
      if (access.insecure === true && !isLoopbackRegistry(registry)) {
        throw new QuorateError('CONFIG_INVALID', `roots.registries["${registry}"].insecure: plain HTTP is allowed only for loopback registries (127.0.0.1, ::1, localhost); use TLS for ${registry}`, { field: `roots.registries.${registry}.insecure` })
      }
    }
    this.init = init
  }

  get dir (): string { return this.init.dir }

  /**
   * The unpacked root for `image`, pulled, verified and unpacked first when it is not cached.
   * Concurrent calls for one image share one pull. Release the lease when the build is done.
   */
  async acquire (image: string): Promise<BuildRootLease> {
    const ref = parseRootImage(image, 'recipe.root.image')
    let p = this.pending.get(ref.image)
    if (p === undefined) {
      p = this.obtain(ref).finally(() => this.pending.delete(ref.image))
      this.pending.set(ref.image, p)
    }
    let root: BuildRoot
    try {
      root = await p
      this.problems.delete(ref.image)
    } catch (err) {
      this.problems.set(ref.image, { message: (err as Error).message, at: Date.now() })
      throw err
    }
    const key = root.manifestDigest
    this.inUse.set(key, (this.inUse.get(key) ?? 0) + 1)
    let released = false
    return {
      ...root,
      release: () => {
        if (released) return
        released = true
        const n = (this.inUse.get(key) ?? 1) - 1
        if (n <= 0) this.inUse.delete(key)
        else this.inUse.set(key, n)
      }
    }
  }

  /** The cached roots with their sizes and last use, most recent first. */
  async list (): Promise<Array<EntryFile & { lastUsed: number, inUse: boolean }>> {
    const out: Array<EntryFile & { lastUsed: number, inUse: boolean }> = []
    const rootsDir = join(this.init.dir, 'roots')
    for (const name of await readdir(rootsDir).catch(() => [] as string[])) {
      const entry = await this.readEntry(join(rootsDir, name))
      if (entry === null) continue
      const st = await stat(join(rootsDir, name, 'entry.json')).catch(() => null)
      if (st === null) continue
      out.push({ ...entry, lastUsed: st.mtimeMs, inUse: this.inUse.has(entry.manifestDigest) })
    }
    return out.sort((a, b) => b.lastUsed - a.lastUsed)
  }

  private checkAllowed (ref: RootImageRef): string {
    const access = this.init.registries?.[ref.registry]
    const pullFrom = access?.mirror ?? ref.registry
    const allowed = typeof this.init.allowedRegistries === 'function' ? this.init.allowedRegistries() : this.init.allowedRegistries
    for (const registry of new Set([ref.registry, pullFrom])) {
      if (!allowed.includes(registry)) {
        throw unavailable(ref, 'not-allowed', `the registry ${registry} is not one this node may pull from (allowed: ${allowed.join(', ') || 'none'}); name it in the policy's recipes or in the node config's roots.allowRegistries`, { registry })
      }
    }
    return pullFrom
  }

  private async obtain (ref: RootImageRef): Promise<BuildRoot> {
    const rootsDir = join(this.init.dir, 'roots')
    // A known index digest → manifest mapping lets a cached root be found without the registry.
    const alias = await readFile(join(this.init.dir, 'index', ref.digest.slice(7)), 'utf8').catch(() => null)
    const arch = this.init.architecture ?? ociArchitecture()
    for (const candidate of new Set([ref.digest, ...(alias !== null ? [alias.trim()] : [])])) {
      const cached = await this.cached(join(rootsDir, candidate.slice(7)), ref)
      if (cached !== null) return cached
    }
    const layout = this.init.layouts?.[ref.name]
    const source = layout !== undefined ? this.layoutSource(ref, layout) : this.registrySource(ref, this.checkAllowed(ref))

    // 1. The manifest (through the index, if the digest names one), checked against its digest.
    let indexDigest: string | undefined
    let manifestDigest = ref.digest
    let raw = await this.verifiedManifest(ref, source, ref.digest)
    let doc = parseJson(raw, ref, 'manifest')
    if (isIndex(doc)) {
      indexDigest = ref.digest
      const entries = Array.isArray(doc.manifests) ? doc.manifests.map((m: unknown) => checkDescriptor(m, 'index entry', ref)) : []
      const pick = entries.find(m => m.platform?.os === 'linux' && m.platform?.architecture === arch && (m.mediaType === undefined || MANIFEST_TYPES.has(m.mediaType)))
      if (pick === undefined) {
        const have = entries.map(m => `${m.platform?.os ?? '?'}/${m.platform?.architecture ?? '?'}`).join(', ')
        throw unavailable(ref, 'verify', `the image index has no linux/${arch} manifest (it has: ${have || 'none'})`)
      }
      manifestDigest = pick.digest
      const cached = await this.cached(join(rootsDir, manifestDigest.slice(7)), ref, indexDigest)
      if (cached !== null) return cached
      raw = await this.verifiedManifest(ref, source, manifestDigest)
      doc = parseJson(raw, ref, 'manifest')
    }
    if (!isManifest(doc)) throw unavailable(ref, 'verify', `${manifestDigest} is neither an image manifest nor an image index`)
    const config = checkDescriptor(doc.config, 'config', ref)
    const layers = (doc.layers as unknown[]).map((l, i) => checkDescriptor(l, `layers[${i}]`, ref))
    const total = layers.reduce((n, l) => n + l.size, config.size)
    const maxImage = this.init.maxImageBytes ?? DEFAULTS.maxImageBytes
    if (total > maxImage) throw unavailable(ref, 'too-large', `the image is ${total} bytes, more than this node's cap of ${maxImage} (roots.maxImageBytes)`)
    for (const [i, l] of layers.entries()) {
      if (l.mediaType === undefined || LAYER_TYPES[l.mediaType] === undefined) {
        throw unavailable(ref, 'verify', `layers[${i}] has media type ${l.mediaType ?? '(none)'}; supported: uncompressed or gzip tar layers (zstd is not)`)
      }
    }

    // 2. Every blob, checked against its digest and size; nothing is unpacked before all pass.
    const tmpRoot = join(this.init.dir, 'tmp')
    // The cache dir and roots/ are searchable by everyone: builds run as an unprivileged user,
    // and bubblewrap, started as that user, must reach a root to mount it. tmp/ is private.
    await this.prepareDir()
    await this.removeStaleScratch(tmpRoot)
    await mkdir(tmpRoot, { recursive: true, mode: 0o700 })
    const scratch = join(tmpRoot, randomUUID())
    await mkdir(scratch, { mode: 0o700 })
    try {
      const blobPath = await source.blobs(manifestDigest, scratch)
      for (const [what, d] of [['config', config], ...layers.map((l, i) => [`layers[${i}]`, l] as const)] as Array<[string, Descriptor]>) {
        const file = blobPath(d.digest)
        const got = await sha256File(file).catch(() => null)
        if (got === null) throw unavailable(ref, 'verify', `the ${what} blob ${d.digest} was not delivered`)
        if (`sha256:${got.hex}` !== d.digest || got.size !== d.size) {
          throw unavailable(ref, 'verify', `the ${what} blob's bytes do not match its digest ${d.digest} (got sha256:${got.hex}, ${got.size} bytes); the registry served wrong content, nothing was cached`, { digest: d.digest })
        }
      }
      const cfg = parseJson(await readFile(blobPath(config.digest)), ref, 'config')
      const platform = `${String(cfg.os ?? '?')}/${String(cfg.architecture ?? '?')}`
      if (cfg.os !== 'linux') throw unavailable(ref, 'verify', `the image is for ${platform}; a build root must be a linux image`)
      const diffIds = (cfg.rootfs as { diff_ids?: unknown } | undefined)?.diff_ids
      if (!Array.isArray(diffIds) || diffIds.length !== layers.length) throw unavailable(ref, 'verify', 'the image config\'s rootfs.diff_ids does not list one digest per layer')

      // 3. Unpack into the scratch dir, then move it into place in one rename.
      const entryDir = join(scratch, 'entry')
      const rootfs = join(entryDir, 'rootfs')
      await mkdir(rootfs, { recursive: true, mode: 0o755 })
      await chmod(entryDir, 0o755)
      const cap = this.init.maxUnpackedBytes ?? DEFAULTS.maxUnpackedBytes
      const sources = layers.map((l, i) => ({ blob: blobPath(l.digest), compression: LAYER_TYPES[l.mediaType as string], where: `build root ${ref.image}: layers[${i}] (${l.digest})` }))
      const got = this.init.unpackUser !== undefined
        ? await unpackAs(this.init.unpackUser, scratch, rootfs, sources, cap)
        : await unpackLayers(rootfs, sources, cap)
      // Owners are not kept: everything belongs to the node's user (not the unpack user) from now on.
      if (this.init.unpackUser !== undefined) await normalizeOwners(rootfs)
      for (const [i, d] of got.entries()) {
        if (`sha256:${d}` !== diffIds[i]) {
          throw unavailable(ref, 'verify', `layers[${i}] unpacks to sha256:${d}, not the config's diff_id ${String(diffIds[i])}`)
        }
      }
      const tree = await treeSummary(rootfs)
      const entry: EntryFile = {
        version: ENTRY_VERSION,
        image: ref.image,
        manifestDigest,
        ...(indexDigest !== undefined ? { indexDigest } : {}),
        platform,
        bytes: tree.bytes,
        files: tree.files,
        treeDigest: tree.digest
      }
      await writeFile(join(entryDir, 'entry.json'), JSON.stringify(entry, null, 2) + '\n')
      await mkdir(rootsDir, { recursive: true, mode: 0o755 })
      const final = join(rootsDir, manifestDigest.slice(7))
      // Entries only appear complete (by rename): one there now was finished by another cache
      // instance or process, and is used as is; anything else there is a damaged leftover.
      if (await this.readEntry(final) === null) {
        await rm(final, { recursive: true, force: true })
        try {
          await rename(entryDir, final)
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code
          if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err
          // Another process finished first: use its entry.
        }
      }
      if (indexDigest !== undefined) {
        await mkdir(join(this.init.dir, 'index'), { recursive: true })
        await writeFile(join(this.init.dir, 'index', indexDigest.slice(7)), manifestDigest + '\n')
      }
      this.checked.add(final)
      await this.evict(manifestDigest)
      return { image: ref.image, dir: join(final, 'rootfs'), manifestDigest, ...(indexDigest !== undefined ? { indexDigest } : {}), platform, bytes: tree.bytes }
    } finally {
      await rm(scratch, { recursive: true, force: true })
    }
  }

  /**
   * Creates the cache dir (0755) if needed and checks it is a real directory of this process's
   * user that no one else can write (it may sit in a world-writable temp dir).
   */
  private async prepareDir (): Promise<void> {
    await mkdir(this.init.dir, { recursive: true, mode: 0o755 })
    const st = await lstat(this.init.dir)
    if (!st.isDirectory() || st.uid !== (process.getuid?.() ?? st.uid) || (st.mode & 0o022) !== 0) {
      throw new QuorateError('ROOT_UNAVAILABLE', `the build root cache ${this.init.dir} is not a directory of this node's user that only it can write; remove it, or set roots.cacheDir in the node config`, { kind: 'config', dir: this.init.dir })
    }
  }

  /** Scratch dirs left by a crashed pull or unpack (older than any pull may take) are removed. */
  private async removeStaleScratch (tmpRoot: string): Promise<void> {
    const cutoff = Date.now() - 2 * (this.init.pullTimeoutMs ?? DEFAULTS.pullTimeoutMs)
    for (const name of await readdir(tmpRoot).catch(() => [] as string[])) {
      const st = await lstat(join(tmpRoot, name)).catch(() => null)
      if (st !== null && st.mtimeMs < cutoff) await rm(join(tmpRoot, name), { recursive: true, force: true })
    }
  }

  private async readEntry (dir: string): Promise<EntryFile | null> {
    try {
      const e = JSON.parse(await readFile(join(dir, 'entry.json'), 'utf8')) as EntryFile
      return e.version === ENTRY_VERSION && typeof e.treeDigest === 'string' ? e : null
    } catch {
      return null
    }
  }

  /** A complete cached entry, or null (a missing, half-written or damaged entry is removed). */
  private async cached (dir: string, ref: RootImageRef, indexDigest?: string): Promise<BuildRoot | null> {
    const exists = await lstat(dir).then(() => true, () => false)
    if (!exists) return null
    const entry = await this.readEntry(dir)
    let whole = entry !== null
    if (entry !== null && !this.checked.has(dir)) {
      // Once per process: the tree still has every file with its type, mode and size.
      const tree = await treeSummary(join(dir, 'rootfs')).catch(() => null)
      whole = tree !== null && tree.digest === entry.treeDigest
    }
    if (entry === null || !whole) {
      await rm(dir, { recursive: true, force: true })
      return null
    }
    this.checked.add(dir)
    const now = new Date()
    await utimes(join(dir, 'entry.json'), now, now)
    return {
      image: ref.image,
      dir: join(dir, 'rootfs'),
      manifestDigest: entry.manifestDigest,
      ...(indexDigest ?? entry.indexDigest) !== undefined ? { indexDigest: indexDigest ?? entry.indexDigest } : {},
      platform: entry.platform,
      bytes: entry.bytes
    }
  }

  /**
   * Retention: removes cached roots no build holds that were last used before `cutoff` (ms
   * since the epoch); returns how many and their bytes. A removed root is pulled again when a
   * recipe needs it.
   */
  async prune (cutoff: number): Promise<{ roots: number, bytes: number }> {
    let roots = 0
    let bytes = 0
    for (const e of await this.list()) {
      if (e.inUse || e.lastUsed >= cutoff) continue
      await rm(join(this.init.dir, 'roots', e.manifestDigest.slice(7)), { recursive: true, force: true })
      this.checked.delete(join(this.init.dir, 'roots', e.manifestDigest.slice(7)))
      roots++
      bytes += e.bytes
    }
    return { roots, bytes }
  }

  /** Removes least recently used roots that no build holds until the cache fits its bound. */
  private async evict (keep: string): Promise<void> {
    const max = this.init.maxBytes ?? DEFAULTS.maxBytes
    const entries = await this.list()
    let total = entries.reduce((n, e) => n + e.bytes, 0)
    for (const e of [...entries].reverse()) {
      if (total <= max) break
      if (e.inUse || e.manifestDigest === keep) continue
      await rm(join(this.init.dir, 'roots', e.manifestDigest.slice(7)), { recursive: true, force: true })
      this.checked.delete(join(this.init.dir, 'roots', e.manifestDigest.slice(7)))
      total -= e.bytes
    }
  }

  private async verifiedManifest (ref: RootImageRef, source: Source, digest: string): Promise<Buffer> {
    const raw = await source.manifest(digest)
    if (raw.length > MAX_MANIFEST_BYTES) throw unavailable(ref, 'verify', `the manifest ${digest} is larger than ${MAX_MANIFEST_BYTES} bytes`)
    const got = `sha256:${createHash('sha256').update(raw).digest('hex')}`
    if (got !== digest) {
      throw unavailable(ref, 'verify', `the manifest's bytes do not match the pinned digest ${digest} (got ${got}); the registry served wrong content, nothing was cached`, { digest })
    }
    return raw
  }

  private layoutSource (ref: RootImageRef, layout: string): Source {
    const blob = (d: string): string => join(layout, 'blobs', 'sha256', d.slice(7))
    return {
      manifest: async d => await readFile(blob(d)).catch(() => {
        throw unavailable(ref, 'pull', `the OCI layout ${layout} (roots.layouts) has no blob ${d}; copy the image into it with skopeo copy docker://${ref.name}@${ref.digest} oci:${layout}`)
      }),
      blobs: async () => blob
    }
  }

  private registrySource (ref: RootImageRef, pullFrom: string): Source {
    // TLS and credentials are those of the registry actually contacted: a mirror has its own
    // entry, and never gets the origin's credentials.
    const access = this.init.registries?.[pullFrom]
    const remote = (d: string): string => `docker://${pullFrom}/${ref.repository}@${d}`
    /** A private auth file: credentials never appear on a command line (ps) or in a message. */
    const authFile = async (scratch: string): Promise<string | null> => {
      if (access?.username === undefined) return null
      const file = join(scratch, 'auth.json')
      const auth = Buffer.from(`${access.username}:${access.password ?? ''}`).toString('base64')
      await writeFile(file, JSON.stringify({ auths: { [pullFrom]: { auth } } }), { mode: 0o600 })
      await chmod(file, 0o600)
      return file
    }
    const skopeo = async (args: string[], scratch: string): Promise<Buffer> => {
      let r
      try {
        r = await runCollect(['skopeo', ...args], {
          env: { PATH: process.env.PATH ?? BUILD_PATH, HOME: scratch },
          timeoutMs: this.init.pullTimeoutMs ?? DEFAULTS.pullTimeoutMs,
          maxOutputBytes: MAX_MANIFEST_BYTES + 1
        })
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw unavailable(ref, 'pull', 'skopeo is not installed (apt-get install skopeo); it pulls build roots')
        throw err
      }
      if (r.code !== 0) {
        const answer = redact(r.stderr.trim().split('\n').filter(l => l.trim() !== '').slice(-2).join(' '), access)
        throw unavailable(ref, 'pull', `${pullFrom} answered: ${answer !== '' ? answer : `skopeo exited with status ${String(r.code)}`}${r.timedOut ? ' (timed out)' : ''}`, { registry: pullFrom })
      }
      return r.stdoutBytes
    }
    const insecure = access?.insecure === true
    return {
      manifest: async d => {
        await this.prepareDir()
        await mkdir(join(this.init.dir, 'tmp'), { recursive: true, mode: 0o700 })
        const scratch = join(this.init.dir, 'tmp', randomUUID())
        await mkdir(scratch, { mode: 0o700 })
        try {
          const auth = await authFile(scratch)
          return await skopeo(['inspect', '--raw', ...(insecure ? ['--tls-verify=false'] : []), ...(auth !== null ? ['--authfile', auth] : []), remote(d)], scratch)
        } finally {
          await rm(scratch, { recursive: true, force: true })
        }
      },
      blobs: async (manifestDigest, scratch) => {
        // Signatures are not what pins a root: its digest is, and every blob is checked after the copy.
        const policy = join(scratch, 'policy.json')
        await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }))
        const auth = await authFile(scratch)
        const dest = join(scratch, 'layout')
        await skopeo([
          '--policy', policy, 'copy', '--quiet', '--preserve-digests',
          ...(insecure ? ['--src-tls-verify=false'] : []),
          ...(auth !== null ? ['--src-authfile', auth] : []),
          remote(manifestDigest), `oci:${dest}:root`
        ], scratch)
        return (d: string) => join(dest, 'blobs', 'sha256', d.slice(7))
      }
    }
  }
}

function redact (text: string, access: RegistryAccess | undefined): string {
  let out = text
  for (const secret of [access?.password, access?.username]) {
    if (secret !== undefined && secret.length > 0) out = out.split(secret).join('***')
  }
  return out
}

function parseJson (raw: Buffer, ref: RootImageRef, what: string): Record<string, unknown> {
  try {
    const v = JSON.parse(raw.toString('utf8')) as unknown
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>
  } catch {
    // fall through
  }
  throw unavailable(ref, 'verify', `the image ${what} is not a JSON object`)
}

function isIndex (doc: Record<string, unknown>): boolean {
  return (typeof doc.mediaType === 'string' && INDEX_TYPES.has(doc.mediaType)) || (doc.mediaType === undefined && Array.isArray(doc.manifests))
}

function isManifest (doc: Record<string, unknown>): boolean {
  return (doc.mediaType === undefined || (typeof doc.mediaType === 'string' && MANIFEST_TYPES.has(doc.mediaType))) && Array.isArray(doc.layers) && doc.config !== undefined
}

/** Counts and a digest of every path with its type, mode and size (sorted walk, no content). */
async function treeSummary (rootfs: string): Promise<{ digest: string, files: number, bytes: number }> {
  const h = createHash('sha256')
  let files = 0
  let bytes = 0
  const walk = async (dir: string, rel: string): Promise<void> => {
    const names = (await readdir(dir)).sort()
    for (const name of names) {
      const p = join(dir, name)
      const st = await lstat(p)
      const kind = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isFile() ? 'f' : 'x'
      h.update(`${rel}${name}\0${kind}\0${st.mode & 0o7777}\0${kind === 'f' ? st.size : 0}\n`)
      files++
      if (kind === 'f') bytes += st.size
      if (kind === 'd') await walk(p, `${rel}${name}/`)
    }
  }
  await walk(rootfs, '')
  return { digest: h.digest('hex'), files, bytes }
}

/** The node config's `roots` section (never gossiped): where roots are cached and how registries are reached. */
export interface RootsConfig {
  /** Cache directory (default: chosen by the node, reachable by its build user). */
  cacheDir?: string
  maxBytes?: number
  maxImageBytes?: number
  maxUnpackedBytes?: number
  /** Registries allowed besides those the policy's recipes name. */
  allowRegistries: string[]
  registries: Record<string, RegistryAccess>
  /** Offline OCI layouts: image name → directory. */
  layouts: Record<string, string>
}

const REGISTRY_NAME = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/

/**
 * Validates the node config's `roots` (absent: defaults). `where` prefixes field names in
 * errors; `resolvePath` makes cacheDir and layout paths absolute (relative to the config file).
 */
export function parseRootsConfig (raw: unknown, where: string, resolvePath: (p: string) => string = p => p): RootsConfig {
  const bad = (field: string, msg: string): never => { throw new QuorateError('CONFIG_INVALID', `${where}.${field}: ${msg}`, { field: `${where}.${field}` }) }
  const out: RootsConfig = { allowRegistries: [], registries: {}, layouts: {} }
  if (raw === undefined) return out
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new QuorateError('CONFIG_INVALID', `${where}: must be an object {cacheDir?, maxBytes?, allowRegistries?, registries?, layouts?}`, { field: where })
  const r = raw as Record<string, unknown>
  const known = ['cacheDir', 'maxBytes', 'maxImageBytes', 'maxUnpackedBytes', 'allowRegistries', 'registries', 'layouts']
  for (const k of Object.keys(r)) if (!known.includes(k)) bad(k, `unknown field; allowed: ${known.join(', ')}`)
  if (r.cacheDir !== undefined) {
    if (typeof r.cacheDir !== 'string' || r.cacheDir === '') bad('cacheDir', 'must be a directory path')
    out.cacheDir = resolvePath(r.cacheDir as string)
  }
  for (const k of ['maxBytes', 'maxImageBytes', 'maxUnpackedBytes'] as const) {
    const v = r[k]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) bad(k, 'must be a positive number of bytes')
    out[k] = v as number
  }
  if (r.allowRegistries !== undefined) {
    if (!Array.isArray(r.allowRegistries) || !r.allowRegistries.every(x => typeof x === 'string' && REGISTRY_NAME.test(x))) bad('allowRegistries', 'must list registries as host or host:port')
    out.allowRegistries = [...r.allowRegistries as string[]]
  }
  if (r.registries !== undefined) {
    if (r.registries === null || typeof r.registries !== 'object' || Array.isArray(r.registries)) bad('registries', 'must map host[:port] to {insecure?, username?, password?, mirror?}')
    for (const [host, a] of Object.entries(r.registries as Record<string, unknown>)) {
      const f = `registries["${host}"]`
      if (!REGISTRY_NAME.test(host)) bad(f, 'keys must be registries as host or host:port')
      if (a === null || typeof a !== 'object' || Array.isArray(a)) bad(f, 'must be an object {insecure?, username?, password?, mirror?}')
      const aa = a as Record<string, unknown>
      for (const k of Object.keys(aa)) if (!['insecure', 'username', 'password', 'mirror'].includes(k)) bad(`${f}.${k}`, 'unknown field; allowed: insecure, username, password, mirror')
      if (aa.insecure !== undefined && typeof aa.insecure !== 'boolean') bad(`${f}.insecure`, 'must be true or false')
      if (aa.insecure === true && !isLoopbackRegistry(host)) bad(`${f}.insecure`, `plain HTTP is allowed only for loopback registries (127.0.0.1, ::1, localhost); use TLS for ${host}`)
      for (const k of ['username', 'password', 'mirror'] as const) if (aa[k] !== undefined && (typeof aa[k] !== 'string' || aa[k] === '')) bad(`${f}.${k}`, 'must be a non-empty string')
      if (aa.mirror !== undefined && !REGISTRY_NAME.test(aa.mirror as string)) bad(`${f}.mirror`, 'must be a registry as host or host:port')
      if ((aa.username === undefined) !== (aa.password === undefined)) bad(f, 'give both username and password, or neither')
      out.registries[host] = aa as RegistryAccess
    }
  }
  if (r.layouts !== undefined) {
    if (r.layouts === null || typeof r.layouts !== 'object' || Array.isArray(r.layouts)) bad('layouts', 'must map image names (as written before @) to OCI layout directories')
    for (const [name, dir] of Object.entries(r.layouts as Record<string, unknown>)) {
      if (typeof dir !== 'string' || dir === '') bad(`layouts["${name}"]`, 'must be a directory path')
      out.layouts[name] = resolvePath(dir as string)
    }
  }
  return out
}

/**
 * Runs unpackLayers in a worker process under `user` (with setpriv): the blobs are passed as
 * open descriptors (the user needs no access to them); only the empty rootfs is the user's.
 */
async function unpackAs (user: { uid: number, gid: number }, scratch: string, rootfs: string, layers: Array<LayerSource & { blob: string }>, cap: number): Promise<string[]> {
  const setpriv = await findOnPath('setpriv', `${process.env.PATH ?? BUILD_PATH}:/usr/bin:/bin`)
  if (setpriv === null) throw new QuorateError('ROOT_UNAVAILABLE', 'setpriv (util-linux) is needed to unpack build roots as an unprivileged user; install util-linux', { kind: 'unpack' })
  // The worker must reach rootfs (scratch and its parents are traversable, not listable) and own it.
  await chmod(scratch, 0o711)
  await chmod(join(scratch, '..'), 0o711)
  await chown(rootfs, user.uid, user.gid)
  const handles = await Promise.all(layers.map(async l => await open(l.blob, 'r')))
  try {
    const worker = workerPath()
    const args = JSON.stringify({ rootfs, cap, layers: layers.map((l, i) => ({ ...l, blob: 3 + i })) })
    const child = spawn(setpriv, [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--', process.execPath, worker, args], {
      env: { PATH: BUILD_PATH },
      cwd: '/',
      stdio: ['ignore', 'pipe', 'pipe', ...handles.map(h => h.fd)]
    })
    let out = ''
    let err = ''
    child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr?.on('data', (d: Buffer) => { if (err.length < 65536) err += d.toString() })
    const code = await new Promise<number | null>((resolve, reject) => { child.once('error', reject); child.once('close', c => resolve(c)) })
    let reply: { diffIds?: string[], error?: { code?: string, message?: string, fields?: Record<string, unknown> } } = {}
    try { reply = JSON.parse(out) } catch { /* below */ }
    if (code === 0 && Array.isArray(reply.diffIds)) return reply.diffIds
    if (reply.error?.code === 'ROOT_UNAVAILABLE') throw new QuorateError('ROOT_UNAVAILABLE', reply.error.message ?? 'unpacking failed', reply.error.fields ?? {})
    throw new QuorateError('NODE_TROUBLE', `the unpack worker failed (${reply.error?.message ?? (err.trim() || `exit status ${String(code)}`)}); this is the node's problem: nothing was cached, and the build runs again`, { kind: 'unpack' })
  } finally {
    for (const h of handles) await h.close()
  }
}

/** The compiled worker next to this module (tests run the TypeScript sources: use the build output). */
function workerPath (): string {
  const here = fileURLToPath(import.meta.url)
  const dir = dirname(here)
  return here.endsWith('.ts') ? join(dir, '..', 'dist', 'unpack-worker.js') : join(dir, 'unpack-worker.js')
}

/** lchown of every entry to this process's uid/gid (never following a symlink). */
async function normalizeOwners (dir: string): Promise<void> {
  const uid = process.getuid?.() ?? 0
  const gid = process.getgid?.() ?? 0
  await lchown(dir, uid, gid)
  for (const name of await readdir(dir)) {
    const p = join(dir, name)
    const st = await lstat(p)
    if (st.isDirectory()) await normalizeOwners(p)
    else await lchown(p, uid, gid)
  }
}
