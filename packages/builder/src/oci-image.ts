import { createHash } from 'node:crypto'
import { lstatSync, readdirSync, readlinkSync } from 'node:fs'
import { copyFile, mkdir, open, readFile, readdir, rename, rm, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { arch as hostArch } from 'node:process'
import { QuorateError, canonicalBytes, parseImageSpec, type OciImageConfig, type OciImageSpec } from '@quorate/core'

export { parseImageSpec }
export type { OciImageConfig, OciImageSpec }

export interface PackOciImageOptions {
  /** The directory whose contents become the image's top layer (its root is the image's /). */
  sourceDir: string
  /** A new or empty directory that receives the OCI image layout. */
  layoutDir: string
  image: {
    config?: OciImageConfig
    refName?: string
    /** A base image in an OCI layout on this host, by manifest digest ("sha256:<hex>"); every blob is verified. */
    base?: { layoutDir: string, digest: string }
    architecture?: string
  }
  /** Every timestamp in the image (tar mtimes, config `created`). */
  sourceDateEpoch: number
}

export interface PackedOciImage {
  /** "sha256:<hex>" of the image manifest: the image's identity. */
  manifestDigest: string
  /** "sha256:<hex>" of every layer, base layers first. */
  layerDigests: string[]
  configDigest: string
  refName: string
}

export const OCI_MEDIA_TYPES = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar'
} as const

const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name'
const DIGEST = /^sha256:[0-9a-f]{64}$/

/**
 * Packs `sourceDir` into an OCI image layout (oci-layout, index.json, blobs/sha256/…) with one
 * uncompressed layer, optionally on top of a base image, so that every builder produces the
 * same bytes and the same manifest digest:
 * - tar entries sorted by the bytes of their path, ustar headers (PAX records only for paths or
 *   link targets over 100 bytes, or files of 8 GiB and more), mtime = sourceDateEpoch, uid/gid
 *   0, no user or group names, modes 0755 for directories, 0755/0644 for files by the owner's
 *   execute bit, symlinks kept as symlinks (0777); no root entry, no padding beyond the two zero
 *   blocks;
 * - config, manifest and index as RFC 8785 canonical JSON; `created` = sourceDateEpoch.
 * Sockets, fifos and devices are refused (OUTPUT_INVALID), as by hashOutput.
 */
export async function packOciImage (options: PackOciImageOptions): Promise<PackedOciImage> {
  const { sourceDir, layoutDir, image, sourceDateEpoch } = options
  if (!Number.isSafeInteger(sourceDateEpoch) || sourceDateEpoch < 0) {
    throw new QuorateError('USAGE', `packOciImage: sourceDateEpoch must be a whole number of seconds ≥ 0, got ${sourceDateEpoch}`)
  }
  const spec = checkPackImage(image)
  await mkdir(layoutDir, { recursive: true })
  if ((await readdir(layoutDir)).length > 0) {
    throw new QuorateError('USAGE', `the OCI layout directory ${layoutDir} is not empty; give a new or empty directory`, { layoutDir })
  }
  const blobs = join(layoutDir, 'blobs', 'sha256')
  await mkdir(blobs, { recursive: true })

  const base = spec.base === undefined ? null : await readBaseImage(spec.base.layoutDir, spec.base.digest, blobs)
  const layer = await writeLayer(sourceDir, blobs, sourceDateEpoch)
  const created = new Date(sourceDateEpoch * 1000).toISOString().replace(/\.000Z$/, 'Z')

  const baseConfig = base?.config ?? {}
  const runConfig: Record<string, unknown> = { ...(isObject(baseConfig.config) ? baseConfig.config : {}) }
  for (const [key, value] of Object.entries(spec.config ?? {})) {
    runConfig[key] = key === 'ExposedPorts' ? Object.fromEntries((value as string[]).map(p => [p.includes('/') ? p : `${p}/tcp`, {}])) : value
  }
  const architecture = spec.architecture ?? (typeof baseConfig.architecture === 'string' ? baseConfig.architecture : goArch(hostArch))
  const baseRootfs = isObject(baseConfig.rootfs) && Array.isArray(baseConfig.rootfs.diff_ids) ? baseConfig.rootfs.diff_ids as string[] : []
  const config: Record<string, unknown> = {
    ...baseConfig,
    created,
    architecture,
    os: typeof baseConfig.os === 'string' ? baseConfig.os : 'linux',
    config: runConfig,
    rootfs: { type: 'layers', diff_ids: [...baseRootfs, layer.digest] },
    history: [
      ...(Array.isArray(baseConfig.history) ? baseConfig.history : []),
      { created, created_by: 'quorate: the build output as one layer' }
    ]
  }
  const configBlob = await writeJsonBlob(blobs, config)
  const layers = [...(base?.layers ?? []), { mediaType: OCI_MEDIA_TYPES.layer, digest: layer.digest, size: layer.size }]
  const manifestBlob = await writeJsonBlob(blobs, {
    schemaVersion: 2,
    mediaType: OCI_MEDIA_TYPES.manifest,
    config: { mediaType: OCI_MEDIA_TYPES.config, digest: configBlob.digest, size: configBlob.size },
    layers
  })
  const refName = spec.refName as string
  await writeFile(join(layoutDir, 'oci-layout'), canonicalBytes({ imageLayoutVersion: '1.0.0' }))
  await writeFile(join(layoutDir, 'index.json'), canonicalBytes({
    schemaVersion: 2,
    mediaType: OCI_MEDIA_TYPES.index,
    manifests: [{ mediaType: OCI_MEDIA_TYPES.manifest, digest: manifestBlob.digest, size: manifestBlob.size, annotations: { [REF_NAME_ANNOTATION]: refName } }]
  }))
  return { manifestDigest: manifestBlob.digest, layerDigests: layers.map(l => l.digest), configDigest: configBlob.digest, refName }
}

function checkPackImage (image: PackOciImageOptions['image']): PackOciImageOptions['image'] & { refName: string } {
  const { base, ...rest } = image
  const spec = parseImageSpec(rest, 'image')
  if (spec.refName === undefined) throw new QuorateError('USAGE', 'packOciImage: image.refName is required (runBuild defaults it to <repoId>:<commit>)')
  if (base !== undefined && (typeof base.digest !== 'string' || !DIGEST.test(base.digest))) {
    throw new QuorateError('RECIPE_INVALID', `image.base.digest: "${String(base.digest).slice(0, 80)}" is not "sha256:" and 64 lowercase hex digits`)
  }
  return { ...spec, refName: spec.refName, base }
}

interface BaseImage { config: Record<string, unknown>, layers: Array<{ mediaType: string, digest: string, size: number }> }

/** Reads and verifies a base image's manifest, config and layers, copying the blobs into `blobs`. */
async function readBaseImage (layoutDir: string, digest: string, blobs: string): Promise<BaseImage> {
  const fail = (what: string): never => {
    throw new QuorateError('OUTPUT_INVALID', `the base image ${digest}: ${what}`, { digest })
  }
  const readBlob = async (d: string): Promise<Buffer> => {
    if (!DIGEST.test(d)) fail(`names a blob "${d.slice(0, 80)}" that is not a sha256 digest`)
    const bytes = await readFile(join(layoutDir, 'blobs', 'sha256', d.slice(7))).catch(() => fail(`blob ${d} is missing from ${layoutDir}; fetch the base image (e.g. skopeo copy docker://IMAGE@${digest} oci:DIR) first`))
    if (`sha256:${createHash('sha256').update(bytes).digest('hex')}` !== d) fail(`blob ${d} in ${layoutDir} does not match its digest`)
    return bytes
  }
  const parse = (bytes: Buffer, what: string): Record<string, unknown> => {
    try {
      const v: unknown = JSON.parse(bytes.toString('utf8'))
      if (isObject(v)) return v
    } catch { /* below */ }
    return fail(`its ${what} is not a JSON object`)
  }
  const manifest = parse(await readBlob(digest), 'manifest')
  if (manifest.mediaType === OCI_MEDIA_TYPES.index || Array.isArray(manifest.manifests)) {
    fail('is an image index; give the digest of one platform\'s image manifest')
  }
  const cfg = manifest.config
  if (!isObject(cfg) || typeof cfg.digest !== 'string') fail('its manifest has no config')
  const configRef = cfg as { digest: string }
  const config = parse(await readBlob(configRef.digest), 'config')
  if (!Array.isArray(manifest.layers)) fail('its manifest has no layers')
  const layers: BaseImage['layers'] = []
  for (const l of manifest.layers as unknown[]) {
    if (!isObject(l) || typeof l.digest !== 'string' || typeof l.mediaType !== 'string' || typeof l.size !== 'number') fail('its manifest lists a malformed layer')
    const layer = l as { digest: string, mediaType: string, size: number }
    await readBlob(layer.digest) // verified, then copied as it is (compressed base layers stay compressed)
    await copyFile(join(layoutDir, 'blobs', 'sha256', layer.digest.slice(7)), join(blobs, layer.digest.slice(7)))
    layers.push({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size })
  }
  return { config, layers }
}

async function writeJsonBlob (blobs: string, value: unknown): Promise<{ digest: string, size: number }> {
  const bytes = canonicalBytes(value)
  const hex = createHash('sha256').update(bytes).digest('hex')
  await writeFile(join(blobs, hex), bytes)
  return { digest: `sha256:${hex}`, size: bytes.length }
}

interface TarEntry { path: Buffer, abs: string, type: 'file' | 'dir' | 'symlink', executable: boolean, size: number, target?: Buffer }

/** Collects the tree under root (lstat, never following symlinks), sorted by path bytes. */
function collectEntries (root: string): TarEntry[] {
  const entries: TarEntry[] = []
  const walk = (dirAbs: string, rel: Buffer | null): void => {
    const names = readdirSync(dirAbs, { encoding: 'buffer' })
    for (const name of names) {
      const abs = join(dirAbs, name.toString('utf8'))
      if (!Buffer.from(name.toString('utf8')).equals(name)) {
        throw new QuorateError('OUTPUT_INVALID', `${abs}: the name is not valid UTF-8; an image layer holds UTF-8 names only`, { path: abs })
      }
      const path = rel === null ? name : Buffer.concat([rel, Buffer.from('/'), name])
      const st = lstatSync(abs)
      if (st.isDirectory()) {
        entries.push({ path, abs, type: 'dir', executable: true, size: 0 })
        walk(abs, path)
      } else if (st.isFile()) {
        entries.push({ path, abs, type: 'file', executable: (st.mode & 0o100) !== 0, size: st.size })
      } else if (st.isSymbolicLink()) {
        entries.push({ path, abs, type: 'symlink', executable: false, size: 0, target: readlinkSync(abs, { encoding: 'buffer' }) })
      } else {
        throw new QuorateError('OUTPUT_INVALID', `${abs} is a special file (socket, fifo or device); an image layer may hold only regular files, directories and symlinks`, { path: abs })
      }
    }
  }
  walk(root, null)
  return entries.sort((a, b) => Buffer.compare(a.path, b.path))
}

/** Writes the layer tar into blobs/ (through a temporary name), hashing as it goes. */
async function writeLayer (sourceDir: string, blobs: string, mtime: number): Promise<{ digest: string, size: number }> {
  const st = lstatSync(sourceDir)
  if (!st.isDirectory()) throw new QuorateError('OUTPUT_INVALID', `${sourceDir} is not a directory; an OCI image is packed from a directory`, { path: sourceDir })
  const entries = collectEntries(sourceDir)
  const tmp = join(blobs, `.layer-${process.pid}-${Date.now()}.tar`)
  const out = await open(tmp, 'wx', 0o644)
  const hash = createHash('sha256')
  let size = 0
  const pending: Buffer[] = []
  let pendingBytes = 0
  const flush = async (): Promise<void> => {
    if (pendingBytes === 0) return
    const chunk = Buffer.concat(pending)
    pending.length = 0
    pendingBytes = 0
    await out.write(chunk)
  }
  const emit = async (b: Buffer): Promise<void> => {
    hash.update(b)
    size += b.length
    pending.push(b)
    pendingBytes += b.length
    if (pendingBytes >= 1 << 20) await flush()
  }
  try {
    for (const e of entries) {
      const name = e.type === 'dir' ? Buffer.concat([e.path, Buffer.from('/')]) : e.path
      for (const block of tarHeader(e, name, mtime)) await emit(block)
      if (e.type === 'file') await copyContents(e, emit)
    }
    await emit(Buffer.alloc(1024)) // end of archive
    await flush()
    await out.close()
  } catch (err) {
    await out.close().catch(() => {})
    await rm(tmp, { force: true })
    throw err
  }
  const hex = hash.digest('hex')
  await rename(tmp, join(blobs, hex))
  return { digest: `sha256:${hex}`, size }
}

async function copyContents (e: TarEntry, emit: (b: Buffer) => Promise<void>): Promise<void> {
  let fh: FileHandle | undefined
  try {
    fh = await open(e.abs, 'r')
    let left = e.size
    while (left > 0) {
      const buf = Buffer.allocUnsafe(Math.min(left, 1 << 20))
      const { bytesRead } = await fh.read(buf, 0, buf.length, null)
      if (bytesRead === 0) break
      await emit(buf.subarray(0, bytesRead))
      left -= bytesRead
    }
    if (left !== 0) throw new QuorateError('OUTPUT_INVALID', `${e.abs} changed size while it was packed`, { path: e.abs })
    const pad = (512 - (e.size % 512)) % 512
    if (pad > 0) await emit(Buffer.alloc(pad))
  } finally {
    await fh?.close()
  }
}

const MAX_OCTAL_SIZE = 0o77777777777 // 11 octal digits: 8 GiB − 1

/** The header block(s) of one entry: a PAX header first when a field does not fit ustar. */
function tarHeader (e: TarEntry, name: Buffer, mtime: number): Buffer[] {
  const records: Array<[string, Buffer]> = []
  if (name.length > 100) records.push(['path', name])
  if (e.target !== undefined && e.target.length > 100) records.push(['linkpath', e.target])
  if (e.size > MAX_OCTAL_SIZE) records.push(['size', Buffer.from(String(e.size))])
  const blocks: Buffer[] = []
  if (records.length > 0) {
    const body = Buffer.concat(records.map(([k, v]) => paxRecord(k, v)))
    blocks.push(ustarBlock({ name: Buffer.from('././@PaxHeader'), mode: 0o644, size: body.length, mtime, type: 'x' }))
    blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512))
  }
  const mode = e.type === 'dir' ? 0o755 : e.type === 'symlink' ? 0o777 : e.executable ? 0o755 : 0o644
  blocks.push(ustarBlock({
    name: name.length > 100 ? name.subarray(0, 100) : name,
    mode,
    size: e.type === 'file' ? Math.min(e.size, MAX_OCTAL_SIZE) : 0,
    mtime,
    type: e.type === 'dir' ? '5' : e.type === 'symlink' ? '2' : '0',
    linkname: e.target !== undefined ? e.target.subarray(0, 100) : undefined
  }))
  return blocks
}

/** "LEN key=value\n", where LEN counts the whole record including itself. */
function paxRecord (key: string, value: Buffer): Buffer {
  const rest = Buffer.byteLength(` ${key}=`) + value.length + 1
  let len = rest
  for (;;) {
    const next = rest + String(len).length
    if (next === len) break
    len = next
  }
  return Buffer.concat([Buffer.from(`${len} ${key}=`), value, Buffer.from('\n')])
}

function ustarBlock (h: { name: Buffer, mode: number, size: number, mtime: number, type: string, linkname?: Buffer }): Buffer {
  const b = Buffer.alloc(512)
  h.name.copy(b, 0, 0, 100)
  octal(b, 100, 8, h.mode)
  octal(b, 108, 8, 0) // uid
  octal(b, 116, 8, 0) // gid
  octal(b, 124, 12, h.size)
  octal(b, 136, 12, h.mtime)
  b.write(h.type, 156, 'latin1')
  h.linkname?.copy(b, 157, 0, 100)
  b.write('ustar\0', 257, 'latin1')
  b.write('00', 263, 'latin1')
  // uname, gname (empty), devmajor/devminor (zeros as octal) and prefix (empty)
  octal(b, 329, 8, 0)
  octal(b, 337, 8, 0)
  b.fill(0x20, 148, 156) // checksum field counts as spaces
  let sum = 0
  for (const byte of b) sum += byte
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  return b
}

/** A zero-padded octal number of width−1 digits and a NUL. */
function octal (b: Buffer, offset: number, width: number, value: number): void {
  b.write(value.toString(8).padStart(width - 1, '0') + '\0', offset, 'latin1')
}

function goArch (nodeArch: string): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' }
  return map[nodeArch] ?? nodeArch
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
