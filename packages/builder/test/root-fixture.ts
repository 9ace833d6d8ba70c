/**
 * Build-root fixtures with real parts: hand-made tar layers (for hostile cases), OCI image
 * layouts, a real OCI registry (Debian's docker-registry, the CNCF distribution registry) on
 * 127.0.0.1, and a Debian bookworm image with gcc built by mmdebstrap once per machine and
 * cached under os.tmpdir()/quorate-root-cache/<version>.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile, copyFile, link } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileP } from './helpers.js'

export interface TarEntry {
  name: string
  type?: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'fifo'
  body?: string | Buffer
  linkname?: string
  mode?: number
  mtime?: number
}

function field (s: string | number, len: number, octal = true): Buffer {
  const b = Buffer.alloc(len)
  const text = octal ? (typeof s === 'number' ? s.toString(8).padStart(len - 1, '0') : s) : String(s)
  b.write(text, 0, Math.min(len, Buffer.byteLength(text)), 'utf8')
  return b
}

/** An uncompressed ustar archive (names up to 100 bytes; enough for hostile-layer cases). */
export function tar (entries: TarEntry[]): Buffer {
  const out: Buffer[] = []
  for (const e of entries) {
    const type = e.type ?? 'file'
    const body = type === 'file' ? Buffer.from(e.body ?? '') : Buffer.alloc(0)
    const h = Buffer.alloc(512)
    field(e.name, 100, false).copy(h, 0)
    field(e.mode ?? (type === 'dir' ? 0o755 : 0o644), 8).copy(h, 100)
    field(0, 8).copy(h, 108)
    field(0, 8).copy(h, 116)
    field(body.length, 12).copy(h, 124)
    field(e.mtime ?? 1_700_000_000, 12).copy(h, 136)
    h[156] = { file: 48, hardlink: 49, symlink: 50, char: 51, dir: 53, fifo: 54 }[type]
    field(e.linkname ?? '', 100, false).copy(h, 157)
    h.write('ustar\u000000', 257, 'latin1')
    if (type === 'char') { field(1, 8).copy(h, 329); field(3, 8).copy(h, 337) }
    h.fill(32, 148, 156)
    let sum = 0
    for (const x of h) sum += x
    h.write(sum.toString(8).padStart(6, '0') + '\u0000 ', 148, 'latin1')
    out.push(h, body, Buffer.alloc((512 - (body.length % 512)) % 512))
  }
  out.push(Buffer.alloc(1024))
  return Buffer.concat(out)
}

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex')

async function shaFile (path: string): Promise<{ hex: string, size: number }> {
  const h = createHash('sha256')
  let size = 0
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) { h.update(c as Buffer); size += (c as Buffer).length }
  return { hex: h.digest('hex'), size }
}

export interface Layout { dir: string, manifestDigest: string, configDigest: string, layerDigests: string[] }

/**
 * An OCI image layout with one manifest of uncompressed tar layers (given as bytes or as a
 * file, moved in by hard link or copy), tagged `refName`. Deterministic for the same layers.
 */
export async function ociLayout (dir: string, layers: Array<Buffer | { file: string }>, o: { architecture?: string, refName?: string, diffIds?: string[] } = {}): Promise<Layout> {
  const blobs = join(dir, 'blobs', 'sha256')
  await mkdir(blobs, { recursive: true })
  const put = async (bytes: Buffer): Promise<{ digest: string, size: number }> => {
    const hex = sha(bytes)
    await writeFile(join(blobs, hex), bytes)
    return { digest: `sha256:${hex}`, size: bytes.length }
  }
  const layerDescs: Array<{ mediaType: string, digest: string, size: number }> = []
  for (const l of layers) {
    if (Buffer.isBuffer(l)) {
      layerDescs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...await put(l) })
    } else {
      const { hex, size } = await shaFile(l.file)
      if (!existsSync(join(blobs, hex))) await link(l.file, join(blobs, hex)).catch(async () => { await copyFile(l.file, join(blobs, hex)) })
      layerDescs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${hex}`, size })
    }
  }
  const config = Buffer.from(JSON.stringify({
    architecture: o.architecture ?? 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/usr/local/bin:/usr/bin:/bin'] },
    rootfs: { type: 'layers', diff_ids: o.diffIds ?? layerDescs.map(d => d.digest) },
    history: []
  }))
  const configDesc = await put(config)
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...configDesc },
    layers: layerDescs
  }))
  const manifestDesc = await put(manifest)
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  await writeFile(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      ...manifestDesc,
      annotations: { 'org.opencontainers.image.ref.name': o.refName ?? 'root' }
    }]
  }))
  return { dir, manifestDigest: manifestDesc.digest, configDigest: configDesc.digest, layerDigests: layerDescs.map(d => d.digest) }
}

/** Adds an image index (linux/amd64 and a fake linux/arm64 entry) over a layout's manifest; returns its digest. */
export async function addIndex (layout: Layout): Promise<string> {
  const manifestBytes = await readFile(join(layout.dir, 'blobs', 'sha256', layout.manifestDigest.slice(7)))
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 10, platform: { os: 'linux', architecture: 'arm64' } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: layout.manifestDigest, size: manifestBytes.length, platform: { os: 'linux', architecture: 'amd64' } }
    ]
  }))
  const hex = sha(index)
  await writeFile(join(layout.dir, 'blobs', 'sha256', hex), index)
  return `sha256:${hex}`
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

export interface Registry {
  /** host:port */
  host: string
  /** Filesystem storage root of the registry. */
  storage: string
  stop: () => Promise<void>
}

/** A real OCI registry (docker-registry) on 127.0.0.1 with a temp config and storage dir. */
export async function startRegistry (): Promise<Registry> {
  const dir = await mkdtemp(join(tmpdir(), 'quorate-registry-'))
  const port = await freePort()
  const storage = join(dir, 'storage')
  await mkdir(storage)
  const config = join(dir, 'config.yml')
  await writeFile(config, [
    'version: 0.1',
    'log:',
    '  level: error',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storage}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    ''
  ].join('\n'))
  const child: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const host = `127.0.0.1:${port}`
  const deadline = Date.now() + 15_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`)
    const ok = await fetch(`http://${host}/v2/`).then(r => r.ok, () => false)
    if (ok) break
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`docker-registry did not start: ${stderr}`) }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return {
    host,
    storage,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise(resolve => child.once('exit', resolve))
        child.kill('SIGTERM')
        await exited
      }
      await rm(dir, { recursive: true, force: true })
    }
  }
}

/** Pushes an OCI layout's `root` image to a loopback registry over plain HTTP. */
export async function pushLayout (layout: string, target: string, refName = 'root'): Promise<void> {
  const policy = join(tmpdir(), 'quorate-skopeo-policy.json')
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }))
  await execFileP('skopeo', ['--policy', policy, 'copy', '--quiet', '--dest-tls-verify=false', '--preserve-digests', `oci:${layout}:${refName}`, `docker://${target}`], { maxBuffer: 1 << 24 })
}

/** The path in the registry's storage of a blob's bytes (to make it serve wrong content). */
export function registryBlobPath (registry: Registry, digest: string): string {
  const hex = digest.slice(7)
  return join(registry.storage, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')
}

/** Bump to rebuild the cached Debian image (different packages, suite or layout). */
export const DEBIAN_ROOT_VERSION = 'bookworm-gcc-make-v1'

/**
 * A Debian bookworm (minbase + gcc, make, libc6-dev) OCI layout, built with mmdebstrap once and
 * cached under os.tmpdir()/quorate-root-cache/<DEBIAN_ROOT_VERSION>. Returns the layout and
 * how long the build took (0 when cached).
 */
export async function debianRootLayout (): Promise<Layout & { buildMs: number }> {
  const base = join(tmpdir(), 'quorate-root-cache', DEBIAN_ROOT_VERSION)
  const done = join(base, 'layout.json')
  if (existsSync(done)) {
    const layout = JSON.parse(await readFile(done, 'utf8')) as Layout
    if (existsSync(join(layout.dir, 'blobs', 'sha256', layout.manifestDigest.slice(7)))) return { ...layout, buildMs: 0 }
  }
  await mkdir(join(tmpdir(), 'quorate-root-cache'), { recursive: true })
  const scratch = await mkdtemp(join(tmpdir(), 'quorate-root-cache', 'build-'))
  const t = performance.now()
  try {
    const rootTar = join(scratch, 'root.tar')
    // --skip=output/dev: no device nodes in the image (the sandbox provides /dev; the unpacker refuses them).
    await execFileP('mmdebstrap', ['--quiet', '--variant=minbase', '--include=gcc,make,libc6-dev', '--skip=output/dev', 'bookworm', rootTar],
      { maxBuffer: 1 << 26, env: { ...process.env, SOURCE_DATE_EPOCH: '1700000000' } })
    const layout = await ociLayout(join(scratch, 'layout'), [{ file: rootTar }])
    await rm(rootTar)
    await rm(base, { recursive: true, force: true })
    await rename(scratch, base)
    const final: Layout = { ...layout, dir: join(base, 'layout') }
    await writeFile(done, JSON.stringify(final))
    return { ...final, buildMs: performance.now() - t }
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}

export async function fileSize (path: string): Promise<number> {
  return (await stat(path)).size
}
