import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { BuildRootCache } from '../src/index.js'
import { tempDirs } from './helpers.js'
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
  console.log(`build root timings (ms): ${JSON.stringify(Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v)])))}`)
})
afterEach(() => {})

describe('a Debian build root from a real registry', () => {
  it('is pulled, verified and unpacked once, with Debian\'s gcc in it', async () => {
    const cacheDir = join(await dirs.make('quorate-roots-debian-'), 'cache')
    const cache = new BuildRootCache({ dir: cacheDir, allowedRegistries: [registry.host], registries: { [registry.host]: { insecure: true } } })
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
})
