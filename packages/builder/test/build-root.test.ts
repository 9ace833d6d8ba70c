import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { chmodSync, existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs'
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { isQuorateError, QuorateError } from '@quorate/core'
import { BuildRootCache, parseRootsConfig } from '../src/index.js'
import { tempDirs } from './helpers.js'
import { addIndex, ociLayout, pushLayout, registryBlobPath, startRegistry, tar, type Registry } from './root-fixture.js'

const dirs = tempDirs()
afterEach(async () => { await dirs.cleanup() })

async function rootError (p: Promise<unknown>): Promise<QuorateError> {
  try {
    await p
  } catch (err) {
    if (isQuorateError(err)) return err
    throw err
  }
  throw new Error('expected ROOT_UNAVAILABLE')
}

/** A cache reading images from one local OCI layout, named `local/root`. */
async function layoutCache (layers: Buffer[], o: { maxBytes?: number, maxImageBytes?: number, maxUnpackedBytes?: number, unpackUser?: { uid: number, gid: number } } = {}): Promise<{ cache: BuildRootCache, image: string, layoutDir: string, cacheDir: string, outside: string }> {
  const base = await dirs.make('quorate-roots-')
  chmodSync(base, 0o755) // an unprivileged unpack worker must reach the cache
  const layoutDir = join(base, 'layout')
  const layout = await ociLayout(layoutDir, layers)
  const cacheDir = join(base, 'cache')
  const outside = join(base, 'outside')
  await mkdir(outside)
  const cache = new BuildRootCache({ dir: cacheDir, allowedRegistries: [], layouts: { 'local/root': layoutDir }, ...o })
  return { cache, image: `local/root@${layout.manifestDigest}`, layoutDir, cacheDir, outside }
}

function cachedRoots (cacheDir: string): string[] {
  return existsSync(join(cacheDir, 'roots')) ? readdirSync(join(cacheDir, 'roots')) : []
}

describe('build roots: unpacking hostile layers', () => {
  it('unpacks files, directories and symlinks, applies whiteouts, clears setuid/setgid and copies hard links', async () => {
    const lower = tar([
      { name: './usr/', type: 'dir' },
      { name: './usr/bin/', type: 'dir' },
      { name: './usr/bin/tool', body: 'v1', mode: 0o4755 },
      { name: './usr/bin/sg', body: 'g', mode: 0o2755 },
      { name: './bin', type: 'symlink', linkname: 'usr/bin' },
      { name: './a/', type: 'dir' },
      { name: './a/keep', body: 'k' },
      { name: './a/gone', body: 'g' },
      { name: './b/', type: 'dir' },
      { name: './b/old', body: 'o' },
      { name: './c/', type: 'dir' },
      { name: './c/x', body: 'x' }
    ])
    const upper = tar([
      { name: './a/.wh.gone' },
      { name: './.wh.c' },
      { name: './b/.wh..wh..opq' },
      { name: './b/new', body: 'n' },
      { name: './usr/bin/tool', body: 'v2', mode: 0o755 },
      { name: './usr/bin/tool2', type: 'hardlink', linkname: './usr/bin/tool' },
      { name: './tmp/', type: 'dir', mode: 0o1777 }
    ])
    for (const [, opts] of modes) {
    const { cache, image } = await layoutCache([lower, upper], opts)
    const root = await cache.acquire(image)
    expect(statSync(join(root.dir, 'usr/bin/tool')).uid).toBe(process.getuid?.())
    const d = root.dir
    expect(readFileSync(join(d, 'usr/bin/tool'), 'utf8')).toBe('v2')
    expect(readFileSync(join(d, 'usr/bin/tool2'), 'utf8')).toBe('v2')
    expect(statSync(join(d, 'usr/bin/tool2')).ino).not.toBe(statSync(join(d, 'usr/bin/tool')).ino)
    expect(statSync(join(d, 'usr/bin/sg')).mode & 0o7777).toBe(0o755)
    expect(readlinkSync(join(d, 'bin'))).toBe('usr/bin')
    expect(readdirSync(join(d, 'a'))).toEqual(['keep'])
    expect(readdirSync(join(d, 'b'))).toEqual(['new'])
    expect(existsSync(join(d, 'c'))).toBe(false)
    expect(statSync(join(d, 'tmp')).mode & 0o7777).toBe(0o1777)
    // Mount points for the sandbox exist even though the image has none.
    for (const p of ['build/src', 'build/home', 'proc', 'dev']) expect(statSync(join(d, p)).isDirectory()).toBe(true)
    for (const p of ['etc/passwd', 'etc/group', 'etc/hosts']) expect(statSync(join(d, p)).isFile()).toBe(true)
    expect(root.manifestDigest).toBe(image.slice(image.indexOf('@') + 1))
    expect(root.platform).toBe('linux/amd64')
    root.release()
    }
  })

  const hostile: Array<[string, Buffer[], RegExp]> = [
    ['a ../ path', [tar([{ name: '../../../outside/pwned', body: 'x' }])], /climbs out of the root with "\.\."/],
    ['an absolute path', [tar([{ name: '/outside/pwned', body: 'x' }])], /absolute path/],
    ['a write through a relative symlink that leaves the root', [
      tar([{ name: 'esc', type: 'symlink', linkname: '../../../../../../../../../OUTSIDE' }]),
      tar([{ name: 'esc/pwned', body: 'x' }])
    ], /leads outside the root/],
    ['a device node', [tar([{ name: 'dev/sda', type: 'char' }])], /device node/],
    ['a FIFO', [tar([{ name: 'fifo', type: 'fifo' }])], /FIFO/],
    ['a hard link to a file outside the root', [tar([{ name: 'passwd', type: 'hardlink', linkname: '../../../../etc/passwd' }])], /climbs out of the root/],
    ['a hard link to an absolute path', [tar([{ name: 'passwd', type: 'hardlink', linkname: '/etc/passwd' }])], /absolute path/]
  ]
  // As root, the unpacking also runs in a worker under an unprivileged uid: both paths are tested.
  const modes: Array<[string, { unpackUser?: { uid: number, gid: number } }]> = [['in the node', {}]]
  if (process.getuid?.() === 0) modes.push(['in the unprivileged worker', { unpackUser: { uid: 50998, gid: 50998 } }])
  for (const [what, layers, message] of hostile) for (const [mode, opts] of modes) {
    it(`refuses a layer with ${what} (${mode}): nothing is written outside, nothing is cached`, async () => {
      const { cache, image, cacheDir, outside } = await layoutCache(layers, opts)
      const err = await rootError(cache.acquire(image))
      expect(err.code).toBe('ROOT_UNAVAILABLE')
      expect(err.message).toMatch(message)
      expect(err.message).toMatch(/nothing of it was cached/)
      expect(readdirSync(outside)).toEqual([])
      expect(existsSync('/outside')).toBe(false)
      expect(existsSync('/pwned')).toBe(false)
      expect(cachedRoots(cacheDir)).toEqual([])
      expect(await readdir(join(cacheDir, 'tmp'))).toEqual([])
    })
  }

  it('follows an absolute symlink inside the root only, and replaces a symlink instead of writing through it', async () => {
    const { cache, image, outside } = await layoutCache([
      tar([
        { name: 'etc/', type: 'dir' },
        { name: 'abs', type: 'symlink', linkname: '/etc' },
        { name: 'victim', type: 'symlink', linkname: '/tmp/not-here' }
      ]),
      tar([
        { name: 'abs/written-through', body: 'inside' },
        { name: 'victim', body: 'replaced' }
      ])
    ])
    const root = await cache.acquire(image)
    expect(readFileSync(join(root.dir, 'etc/written-through'), 'utf8')).toBe('inside')
    expect(lstatSync(join(root.dir, 'victim')).isFile()).toBe(true)
    expect(existsSync('/tmp/not-here')).toBe(false)
    expect(readdirSync(outside)).toEqual([])
    root.release()
  })

  it('caps the image size before fetching its layers', async () => {
    const { cache, image, cacheDir } = await layoutCache([tar([{ name: 'big', body: Buffer.alloc(64 * 1024) }])], { maxImageBytes: 16 * 1024 })
    const err = await rootError(cache.acquire(image))
    expect(err.message).toMatch(/bytes, more than this node's cap of 16384 \(roots.maxImageBytes\)/)
    expect(cachedRoots(cacheDir)).toEqual([])
  })

  it('caps the decompressed size', async () => {
    const { cache, image, cacheDir } = await layoutCache([tar([{ name: 'big', body: Buffer.alloc(64 * 1024) }])], { maxUnpackedBytes: 32 * 1024 })
    const err = await rootError(cache.acquire(image))
    expect(err.message).toMatch(/more than 32768 bytes.*roots.maxUnpackedBytes/)
    expect(cachedRoots(cacheDir)).toEqual([])
  })
})

describe('build roots: the cache', () => {
  const layer = tar([{ name: 'usr/', type: 'dir' }, { name: 'usr/hello', body: 'hello' }])

  it('shares one unpacked root between concurrent builds and between two cache instances', async () => {
    const { cache, image, cacheDir, layoutDir } = await layoutCache([layer])
    const other = new BuildRootCache({ dir: cacheDir, allowedRegistries: [], layouts: { 'local/root': layoutDir } })
    const roots = await Promise.all([cache.acquire(image), cache.acquire(image), other.acquire(image)])
    expect(new Set(roots.map(r => r.dir)).size).toBe(1)
    expect(readFileSync(join(roots[0].dir, 'usr/hello'), 'utf8')).toBe('hello')
    expect(cachedRoots(cacheDir)).toHaveLength(1)
    expect(await readdir(join(cacheDir, 'tmp'))).toEqual([])
    for (const r of roots) r.release()
  })

  it('detects a half-unpacked or damaged entry and unpacks it again', async () => {
    const { cache, image, cacheDir, layoutDir } = await layoutCache([layer])
    const first = await cache.acquire(image)
    first.release()
    const entry = join(first.dir, '..')
    // Damaged: a file lost its contents (as after a crash or a disk problem).
    await writeFile(join(first.dir, 'usr/hello'), '')
    const fresh = new BuildRootCache({ dir: cacheDir, allowedRegistries: [], layouts: { 'local/root': layoutDir } })
    const again = await fresh.acquire(image)
    expect(readFileSync(join(again.dir, 'usr/hello'), 'utf8')).toBe('hello')
    again.release()
    // Half-unpacked: the entry file (written last) is missing.
    await rm(join(entry, 'entry.json'))
    await rm(join(again.dir, 'usr/hello'))
    const third = await new BuildRootCache({ dir: cacheDir, allowedRegistries: [], layouts: { 'local/root': layoutDir } }).acquire(image)
    expect(readFileSync(join(third.dir, 'usr/hello'), 'utf8')).toBe('hello')
    third.release()
  })

  it('evicts the least recently used root that no build holds when over its size bound', async () => {
    const base = await dirs.make('quorate-roots-')
    const images: string[] = []
    const layouts: Record<string, string> = {}
    for (const n of ['one', 'two', 'three']) {
      const l = await ociLayout(join(base, n), [tar([{ name: 'data', body: Buffer.alloc(10_000, n) }])])
      layouts[`local/${n}`] = l.dir
      images.push(`local/${n}@${l.manifestDigest}`)
    }
    const cacheDir = join(base, 'cache')
    const cache = new BuildRootCache({ dir: cacheDir, allowedRegistries: [], layouts, maxBytes: 25_000 })
    const one = await cache.acquire(images[0])
    const two = await cache.acquire(images[1])
    two.release()
    // one is held by a build: it stays; two is unused and oldest: it goes.
    const three = await cache.acquire(images[2])
    const kept = (await cache.list()).map(e => e.image).sort()
    expect(kept).toEqual([images[0], images[2]].sort())
    one.release()
    three.release()
  })

  it('selects the linux/<arch> manifest of an image index and records both digests', async () => {
    const base = await dirs.make('quorate-roots-')
    const l = await ociLayout(join(base, 'layout'), [layer])
    const index = await addIndex(l)
    const cache = new BuildRootCache({ dir: join(base, 'cache'), allowedRegistries: [], layouts: { 'local/root': l.dir }, architecture: 'amd64' })
    const root = await cache.acquire(`local/root@${index}`)
    expect(root.indexDigest).toBe(index)
    expect(root.manifestDigest).toBe(l.manifestDigest)
    root.release()
    const s390 = new BuildRootCache({ dir: join(base, 'cache2'), allowedRegistries: [], layouts: { 'local/root': l.dir }, architecture: 's390x' })
    expect((await rootError(s390.acquire(`local/root@${index}`))).message).toMatch(/no linux\/s390x manifest \(it has: linux\/arm64, linux\/amd64\)/)
  })

  it('refuses a layout blob whose bytes do not match its digest', async () => {
    const { cache, image, cacheDir, layoutDir } = await layoutCache([layer])
    const blobs = join(layoutDir, 'blobs', 'sha256')
    const layerHex = readdirSync(blobs).find(h => readFileSync(join(blobs, h)).length === layer.length) as string
    await writeFile(join(blobs, layerHex), Buffer.concat([layer.subarray(0, 600), Buffer.from('X'), layer.subarray(601)]))
    const err = await rootError(cache.acquire(image))
    expect(err.code).toBe('ROOT_UNAVAILABLE')
    expect(err.message).toMatch(/layers\[0\] blob's bytes do not match its digest/)
    expect(cachedRoots(cacheDir)).toEqual([])
  })
})

describe('build roots: a real registry on 127.0.0.1', () => {
  let registry: Registry
  let image: string
  let manifestDigest: string
  let layerDigest: string
  const layer = tar([{ name: 'usr/', type: 'dir' }, { name: 'usr/from-registry', body: 'pulled' }])

  beforeAll(async () => {
    registry = await startRegistry()
    const base = await dirs.make('quorate-roots-push-')
    const l = await ociLayout(join(base, 'layout'), [layer])
    await pushLayout(l.dir, `${registry.host}/build/tiny:v1`)
    manifestDigest = l.manifestDigest
    layerDigest = l.layerDigests[0]
    image = `${registry.host}/build/tiny@${manifestDigest}`
  })
  afterAll(async () => { await registry?.stop() })

  const cacheFor = async (over: Partial<ConstructorParameters<typeof BuildRootCache>[0]> = {}): Promise<{ cache: BuildRootCache, dir: string }> => {
    const dir = join(await dirs.make('quorate-roots-cache-'), 'cache')
    return { cache: new BuildRootCache({ dir, allowedRegistries: [registry.host], registries: { [registry.host]: { insecure: true } }, ...over }), dir }
  }

  it('pulls by digest with skopeo, verifies and unpacks', async () => {
    const { cache } = await cacheFor()
    const root = await cache.acquire(image)
    expect(root.manifestDigest).toBe(manifestDigest)
    expect(readFileSync(join(root.dir, 'usr/from-registry'), 'utf8')).toBe('pulled')
    root.release()
  })

  it('pulls an image index by digest from the registry and unpacks its linux/amd64 manifest', async () => {
    const base = await dirs.make('quorate-roots-index-')
    const l = await ociLayout(join(base, 'layout'), [tar([{ name: 'usr/', type: 'dir' }, { name: 'usr/indexed', body: 'yes' }])])
    // An index whose two platforms both exist in the layout (skopeo copies every manifest with --all).
    const manifest = readFileSync(join(l.dir, 'blobs', 'sha256', l.manifestDigest.slice(7)))
    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: ['arm64', 'amd64'].map(architecture => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: l.manifestDigest, size: manifest.length, platform: { os: 'linux', architecture } }))
    }))
    const indexDigest = `sha256:${createHash('sha256').update(index).digest('hex')}`
    await writeFile(join(l.dir, 'blobs', 'sha256', indexDigest.slice(7)), index)
    await writeFile(join(l.dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: indexDigest, size: index.length, annotations: { 'org.opencontainers.image.ref.name': 'multi' } }] }))
    await pushLayout(l.dir, `${registry.host}/build/multi:v1`, 'multi', { all: true })
    const { cache } = await cacheFor({ architecture: 'amd64' })
    const root = await cache.acquire(`${registry.host}/build/multi@${indexDigest}`)
    expect(root.indexDigest).toBe(indexDigest)
    expect(root.manifestDigest).toBe(l.manifestDigest)
    expect(readFileSync(join(root.dir, 'usr/indexed'), 'utf8')).toBe('yes')
    root.release()
  })

  it('pulls through a mirror named in the node config (the digest keeps the mirror honest)', async () => {
    const { cache } = await cacheFor({
      allowedRegistries: ['registry.example.org', registry.host],
      registries: { 'registry.example.org': { mirror: registry.host }, [registry.host]: { insecure: true } }
    })
    const root = await cache.acquire(`registry.example.org/build/tiny@${manifestDigest}`)
    expect(readFileSync(join(root.dir, 'usr/from-registry'), 'utf8')).toBe('pulled')
    root.release()
  })

  it('refuses registries the node is not allowed to pull from, and plain HTTP to a non-loopback registry', async () => {
    const { cache } = await cacheFor({ allowedRegistries: ['registry.example.org'] })
    const err = await rootError(cache.acquire(image))
    expect(err.fields.kind).toBe('not-allowed')
    expect(err.message).toMatch(new RegExp(`registry ${registry.host} is not one this node may pull from \\(allowed: registry.example.org\\)`))
    expect(() => new BuildRootCache({ dir: '/nonexistent', allowedRegistries: ['10.0.0.5:5000'], registries: { '10.0.0.5:5000': { insecure: true } } }))
      .toThrow(/plain HTTP is allowed only for loopback registries/)
  })

  it('uses TLS unless the node config names the loopback registry insecure', async () => {
    const { cache } = await cacheFor({ registries: {} })
    const err = await rootError(cache.acquire(image))
    expect(err.code).toBe('ROOT_UNAVAILABLE')
    expect(err.message).toMatch(/HTTP response to HTTPS client|https/i)
  })

  it('says which image and what the registry answered when the digest is unknown or the registry is down', async () => {
    const { cache } = await cacheFor()
    const unknown = `${registry.host}/build/tiny@sha256:${'1'.repeat(64)}`
    const err = await rootError(cache.acquire(unknown))
    expect(err.code).toBe('ROOT_UNAVAILABLE')
    expect(err.message).toContain(`build root ${unknown}: ${registry.host} answered:`)
    expect(err.message).toMatch(/manifest unknown|not found/i)
    const down = new BuildRootCache({ dir: join(cache.dir, '..', 'c2'), allowedRegistries: ['127.0.0.1:9'], registries: { '127.0.0.1:9': { insecure: true } } })
    const e2 = await rootError(down.acquire(`127.0.0.1:9/build/tiny@${manifestDigest}`))
    expect(e2.message).toMatch(/127\.0\.0\.1:9 answered: .*(connection refused|connect)/i)
    expect(cache.problems.get(unknown)?.message).toBe(err.message)
  })

  it('keeps credentials out of command lines and messages', async () => {
    const { cache } = await cacheFor({ registries: { [registry.host]: { insecure: true, username: 'quorate', password: 'hunter2-secret' } } })
    const root = await cache.acquire(image) // the registry has no auth: credentials are offered and unused
    root.release()
    const err = await rootError(cache.acquire(`${registry.host}/build/tiny@sha256:${'2'.repeat(64)}`))
    expect(err.message).not.toContain('hunter2-secret')
    expect(JSON.stringify(err.fields)).not.toContain('hunter2-secret')
  })

  it('detects a registry serving wrong bytes for a layer: nothing cached, a typed error', async () => {
    const path = registryBlobPath(registry, layerDigest)
    const good = readFileSync(path)
    const bad = Buffer.from(good)
    bad[700] ^= 0xff
    await writeFile(path, bad)
    try {
      const { cache, dir } = await cacheFor()
      const err = await rootError(cache.acquire(image))
      expect(err.code).toBe('ROOT_UNAVAILABLE')
      expect(err.message).toMatch(/digest|did not match/i)
      expect(cachedRoots(dir)).toEqual([])
      expect(await readdir(join(dir, 'tmp'))).toEqual([])
    } finally {
      await writeFile(path, good)
    }
  })

  it('detects a registry serving a manifest whose bytes do not match the pinned digest', async () => {
    const path = registryBlobPath(registry, manifestDigest)
    const good = readFileSync(path)
    const doc = JSON.parse(good.toString())
    doc.annotations = { injected: 'yes' }
    await writeFile(path, JSON.stringify(doc))
    try {
      const { cache, dir } = await cacheFor()
      const err = await rootError(cache.acquire(image))
      expect(err.code).toBe('ROOT_UNAVAILABLE')
      expect(err.message).toMatch(/digest/i)
      expect(cachedRoots(dir)).toEqual([])
    } finally {
      await writeFile(path, good)
    }
  })
})

describe('build roots: the node config', () => {
  it('reads roots with defaults, resolves paths, and names the field of each mistake', () => {
    expect(parseRootsConfig(undefined, 'roots')).toEqual({ allowRegistries: [], registries: {}, layouts: {} })
    const c = parseRootsConfig({ cacheDir: 'cache', maxBytes: 1000, allowRegistries: ['registry.example.org'], registries: { '127.0.0.1:5000': { insecure: true }, 'registry.example.org': { username: 'u', password: 'p', mirror: 'mirror.example.org' } }, layouts: { 'local/root': 'layout' } }, 'roots', p => `/etc/quorate/${p}`)
    expect(c.cacheDir).toBe('/etc/quorate/cache')
    expect(c.layouts).toEqual({ 'local/root': '/etc/quorate/layout' })
    const field = (raw: unknown): string => { try { parseRootsConfig(raw, 'roots'); return 'ok' } catch (e) { return `${(e as QuorateError).code} ${(e as Error).message}` } }
    expect(field({ registries: { '10.1.2.3:5000': { insecure: true } } })).toMatch(/^CONFIG_INVALID roots.registries\["10.1.2.3:5000"\].insecure: plain HTTP is allowed only for loopback registries/)
    expect(field({ registries: { 'r.example.org': { username: 'u' } } })).toMatch(/give both username and password/)
    expect(field({ maxBytes: -1 })).toMatch(/roots.maxBytes: must be a positive number/)
    expect(field({ tls: false })).toMatch(/roots.tls: unknown field/)
    expect(field({ allowRegistries: ['https://x'] })).toMatch(/roots.allowRegistries/)
  })
})
