import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { chmodSync, existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_RECIPE_LIMITS } from '@quorate/core'
import { BuildRootCache, FetchCache, resolveBuildUser } from '../src/index.js'
import { sandboxedBuildFixture, tempDirs } from './helpers.js'
import { debianRootLayout, pushLayout, startRegistry, type Registry } from './root-fixture.js'

/**
 * A real Debian bookworm root (minbase + gcc, make, libc6-dev; built once per machine by
 * mmdebstrap and cached under os.tmpdir()), pushed to a real registry on 127.0.0.1.
 */
const dirs = tempDirs()
let registry: Registry
let image: string
const timings: Record<string, number> = {}

beforeAll(async () => {
  const layout = await debianRootLayout()
  timings.imageBuildMs = layout.buildMs
  registry = await startRegistry()
  const t = performance.now()
  await pushLayout(layout.dir, `${registry.host}/build/bookworm-gcc:v1`)
  timings.pushMs = performance.now() - t
  image = `${registry.host}/build/bookworm-gcc@${layout.manifestDigest}`
}, 300_000)

afterAll(async () => {
  await registry?.stop()
  await dirs.cleanup()
  if (sharedDir !== undefined) await rm(sharedDir, { recursive: true, force: true })
  console.log(`build root timings (ms): ${JSON.stringify(Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v)])))}`)
})
afterEach(() => {})
/** One cache for the build tests (each unpack of the Debian root takes seconds). */
let shared: BuildRootCache | undefined
async function sharedCache (): Promise<BuildRootCache> {
  if (shared !== undefined) return shared
  const dir = await mkdtemp(join(tmpdir(), 'quorate-roots-shared-'))
  chmodSync(dir, 0o755)
  sharedDir = dir
  shared = new BuildRootCache({ dir: join(dir, 'cache'), allowedRegistries: [registry.host], registries: { [registry.host]: { insecure: true } } })
  return shared
}
let sharedDir: string | undefined
const fixture = sandboxedBuildFixture('quorate-roots-build', { ...DEFAULT_RECIPE_LIMITS, timeoutSeconds: 120 })

/** Which toolchain the build saw, and that `/` is read-only. */
const PROBE = [
  'set -e; mkdir -p out',
  'gcc --version | head -1 > out/gcc',
  'if [ -e /usr/bin/gcc-11 ]; then echo host > out/toolchain; else echo root > out/toolchain; fi',
  'if touch /usr/quorate-write-test 2>/dev/null; then echo yes > out/root-writable; else echo no > out/root-writable; fi',
  'printf "int main(void){return 0;}\\n" > t.c && gcc -O2 -o out/t t.c'
].join('; ')

describe('a Debian build root from a real registry', () => {
  it('is pulled, verified and unpacked once, with Debian\'s gcc in it', async () => {
    const base = await dirs.make('quorate-roots-debian-')
    chmodSync(base, 0o755)
    const cacheDir = join(base, 'cache')
    // As a root node does: the layers are unpacked by a worker under an unprivileged uid.
    const unpackUser = process.getuid?.() === 0 ? { uid: 50998, gid: 50998 } : undefined
    const cache = new BuildRootCache({ dir: cacheDir, allowedRegistries: [registry.host], registries: { [registry.host]: { insecure: true } }, ...(unpackUser !== undefined ? { unpackUser } : {}) })
    let t = performance.now()
    const root = await cache.acquire(image)
    timings.pullUnpackMs = performance.now() - t
    expect(existsSync(join(root.dir, 'usr/bin/gcc-12'))).toBe(true)
    expect(readFileSync(join(root.dir, 'etc/os-release'), 'utf8')).toMatch(/bookworm/)
    expect(root.bytes).toBeGreaterThan(100_000_000)
    // A second cache instance (a restarted node) checks the entry and uses it without pulling.
    t = performance.now()
    const again = await new BuildRootCache({ dir: cacheDir, allowedRegistries: [] }).acquire(image)
    timings.cachedCheckMs = performance.now() - t
    expect(again.dir).toBe(root.dir)
    root.release()
    again.release()
  })

  it('runs a build with the root as `/`: the root\'s gcc, not the host\'s; read-only; the fingerprint names the root', async () => {
    const base = await dirs.make('quorate-roots-debian-build-')
    chmodSync(base, 0o755) // bubblewrap runs as the build user and must reach the root
    const cache = await sharedCache()
    const rooted = await fixture.build({ root: { image }, build: ['sh', '-c', PROBE] }, { rootCache: cache, outputCopyDir: join(base, 'out-root') })
    if (!rooted.ok) throw new Error(`${rooted.reason}\n${rooted.log.tail}`)
    expect(readFileSync(join(base, 'out-root', 'toolchain'), 'utf8')).toBe('root\n')
    expect(readFileSync(join(base, 'out-root', 'root-writable'), 'utf8')).toBe('no\n')
    expect(rooted.fingerprint.root).toMatchObject({ image, manifestDigest: image.slice(image.indexOf('@') + 1), platform: 'linux/amd64', os: 'Debian GNU/Linux 12 (bookworm)' })
    expect(rooted.fingerprint.tools.gcc).toMatch(/^gcc .*12\./)
    timings.rootedFirstBuildMs = Object.values(rooted.durationsMs).reduce((a, b) => a + b, 0)
    timings.rootAcquireFirstMs = rooted.durationsMs.root ?? -1
    // Again (cached root), and the same build on the host toolchain: the difference is the root's overhead.
    const again = await fixture.build({ root: { image }, build: ['sh', '-c', PROBE] }, { rootCache: cache })
    if (!again.ok) throw new Error(again.reason)
    expect(again.output.narSha256).toBe(rooted.output.narSha256)
    timings.rootAcquireCachedMs = again.durationsMs.root ?? -1
    timings.rootedBuildPhaseMs = again.durationsMs.build
    const host = await fixture.build({ build: ['sh', '-c', PROBE] }, { outputCopyDir: join(base, 'out-host') })
    if (!host.ok) throw new Error(host.reason)
    expect(readFileSync(join(base, 'out-host', 'toolchain'), 'utf8')).toBe('host\n')
    expect(host.fingerprint.root).toBeUndefined()
    timings.hostBuildPhaseMs = host.durationsMs.build
  })

  it('runs the fetch phase inside the root too (its own network namespace, the generated resolv.conf)', async () => {
    const base = await dirs.make('quorate-roots-debian-fetch-')
    chmodSync(base, 0o755)
    const cache = await sharedCache()
    const r = await fixture.build({
      root: { image },
      fetch: ['sh', '-c', 'cat /etc/debian_version > fetched && grep -c nameserver /etc/resolv.conf >> fetched && if [ -e /usr/bin/gcc-11 ]; then echo host >> fetched; else echo root >> fetched; fi'],
      build: ['sh', '-c', 'mkdir -p out && cp fetched out/']
    }, { rootCache: cache, outputCopyDir: join(base, 'out') })
    if (!r.ok) throw new Error(`${r.reason}\n${r.log.tail}`)
    const lines = readFileSync(join(base, 'out', 'fetched'), 'utf8').trim().split('\n')
    expect(lines[0]).toMatch(/^12\./)
    expect(lines[1]).toBe('1')
    expect(lines[2]).toBe('root')
  })

  it('gives the fetch phase inside the root its npm fetch cache, kept per root digest', async () => {
    const base = await dirs.make('quorate-roots-debian-fetchcache-')
    chmodSync(base, 0o755)
    const fetchCache = new FetchCache({ dir: join(base, 'fetch-cache'), user: resolveBuildUser() })
    const entry = 'sha512/ab/cd/' + 'e'.repeat(124)
    const step = {
      root: { image },
      // What npm would leave in $HOME/.npm (here: bytes that do not hash to their name, which the node drops).
      fetch: ['sh', '-c', `mkdir -p $HOME/.npm/_cacache/content-v2/sha512/ab/cd && echo x > $HOME/.npm/_cacache/content-v2/${entry} && ls -a $HOME/.npm > seen`],
      build: ['sh', '-c', 'mkdir -p out && cp seen out/ && ls -a $HOME/.npm > out/build-sees']
    }
    const r = await fixture.build(step, { rootCache: await sharedCache(), fetchCache, outputCopyDir: join(base, 'out') })
    if (!r.ok) throw new Error(`${r.reason}\n${r.log.tail}`)
    expect(readFileSync(join(base, 'out', 'seen'), 'utf8')).toBe('.\n..\n_cacache\n')
    // The build phase sees only the empty mount point: the cache is the fetch phase's alone.
    expect(readFileSync(join(base, 'out', 'build-sees'), 'utf8')).toBe('.\n..\n')
    const manifestHex = r.fingerprint.root?.manifestDigest.replace('sha256:', '')
    expect(existsSync(join(fetchCache.keyDir('demo', `sha256:${manifestHex}`), 'state.json'))).toBe(true)
    expect(r.log.tail).toMatch(/fetch cache after the fetch phase: 0 entries, 0 bytes; 1 damaged or foreign entries removed/)
  })

  it('is the node\'s trouble, not a build failure, when the root cannot be pulled', async () => {
    const base = await dirs.make('quorate-roots-debian-missing-')
    const cache = new BuildRootCache({ dir: join(base, 'cache'), allowedRegistries: [registry.host], registries: { [registry.host]: { insecure: true } } })
    const missing = `${registry.host}/build/bookworm-gcc@sha256:${'3'.repeat(64)}`
    await expect(fixture.build({ root: { image: missing }, build: ['true'] }, { rootCache: cache })).rejects.toMatchObject({ code: 'ROOT_UNAVAILABLE' })
    await expect(fixture.build({ root: { image: missing }, build: ['true'] })).rejects.toMatchObject({ code: 'ROOT_UNAVAILABLE' })
  })
})
