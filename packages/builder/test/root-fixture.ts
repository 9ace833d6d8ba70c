/**
 * Build-root fixtures with real parts: hand-made tar layers (for hostile cases), OCI image
 * layouts, a real OCI registry (Debian's docker-registry, the CNCF distribution registry) on
 * 127.0.0.1, and a Debian bookworm image with gcc built by mmdebstrap once per machine and
 * cached under os.tmpdir()/quorate-root-cache/<version>.
 */
import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
// @ts-expect-error plain JS helper shared with `npm run demo:roots`
import * as fixture from '../../../scripts/build-root-fixture.js'

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

export interface Layout { dir: string, manifestDigest: string, configDigest: string, layerDigests: string[] }
export interface Registry {
  /** host:port */
  host: string
  /** Filesystem storage root of the registry. */
  storage: string
  stop: () => Promise<void>
}

// The parts shared with `npm run demo:roots` live in plain JS.
export const ociLayout = fixture.ociLayout as (dir: string, layers: Array<Buffer | { file: string }>, o?: { architecture?: string, refName?: string, diffIds?: string[] }) => Promise<Layout>
export const startRegistry = fixture.startRegistry as () => Promise<Registry>
export const pushLayout = fixture.pushLayout as (layout: string, target: string, refName?: string, o?: { all?: boolean }) => Promise<void>
export const registryBlobPath = fixture.registryBlobPath as (registry: Registry, digest: string) => string
export const debianRootLayout = fixture.debianRootLayout as () => Promise<Layout & { buildMs: number }>
export const DEBIAN_ROOT_VERSION = fixture.DEBIAN_ROOT_VERSION as string

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

