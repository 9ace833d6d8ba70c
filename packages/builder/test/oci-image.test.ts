import { describe, it, expect, afterEach } from 'vitest'
import { join } from 'node:path'
import { chmod, chown, lutimes, mkdir, readFile, readdir, symlink, utimes, writeFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { DEFAULT_RECIPE_LIMITS, isQuorateError, type Recipe, parseRecipeSpec } from '@quorate/core'
import { GitMirror, hashOutput, packOciImage, parseImageSpec, runBuild } from '../src/index.js'
import { tempDirs, makeRepo, commitFiles, execFileP } from './helpers.js'

// Needs skopeo (apt-get install skopeo) to read the layouts back, and GNU tar to list layers.
const SDE = 1_712_345_678
const LONG = 'l'.repeat(120)

/** The same tree, made with the given file modes, owner, mtime and creation order. */
async function makeTree (dir: string, o: { fileMode: number, execMode: number, dirMode: number, uid: number, mtime: number, reverse: boolean }): Promise<void> {
  const steps: Array<() => Promise<void>> = [
    async () => { await mkdir(join(dir, 'app', 'bin'), { recursive: true }) },
    async () => { await writeFile(join(dir, 'app', 'bin', 'hello'), '#!/bin/sh\necho hello\n') },
    async () => { await writeFile(join(dir, 'app', 'README'), 'read me\n') },
    async () => { await writeFile(join(dir, 'a-b'), 'dash sorts before slash\n') },
    async () => { await mkdir(join(dir, LONG), { recursive: true }) },
    async () => { await writeFile(join(dir, LONG, 'inner.txt'), 'a path over 100 bytes\n') },
    async () => { await symlink('app/bin/hello', join(dir, 'hello')) }
  ]
  await mkdir(dir, { recursive: true })
  for (const step of o.reverse ? [steps[0], steps[4], ...steps.slice(1, 4).reverse(), ...steps.slice(5).reverse()] : steps) await step()
  for (const f of ['app/README', 'a-b', `${LONG}/inner.txt`]) await chmod(join(dir, f), o.fileMode)
  await chmod(join(dir, 'app', 'bin', 'hello'), o.execMode)
  for (const d of ['app', 'app/bin', LONG]) await chmod(join(dir, d), o.dirMode)
  for (const p of ['app', 'app/bin', 'app/bin/hello', 'app/README', 'a-b', LONG, `${LONG}/inner.txt`]) {
    await chown(join(dir, p), o.uid, o.uid)
    await utimes(join(dir, p), o.mtime, o.mtime)
  }
  await lutimes(join(dir, 'hello'), o.mtime, o.mtime)
}

const skopeo = async (...args: string[]): Promise<Record<string, unknown>> => JSON.parse((await execFileP('skopeo', args)).stdout) as Record<string, unknown>

describe('packOciImage', () => {
  const temp = tempDirs()
  afterEach(temp.cleanup)

  it('gives the same image digest for the same tree whatever its mtimes, owners, modes and creation order', async () => {
    const root = await temp.make()
    await makeTree(join(root, 'one'), { fileMode: 0o644, execMode: 0o755, dirMode: 0o755, uid: 0, mtime: 1_000_000_000, reverse: false })
    await makeTree(join(root, 'two'), { fileMode: 0o600, execMode: 0o700, dirMode: 0o700, uid: 4321, mtime: 1_800_000_000, reverse: true })
    const image = { refName: 'example.org/demo:1.0', config: { Cmd: ['/app/bin/hello'], Env: ['PATH=/app/bin'], ExposedPorts: ['8080/tcp'], Labels: { team: 'q' }, WorkingDir: '/app' } }
    const a = await packOciImage({ sourceDir: join(root, 'one'), layoutDir: join(root, 'layout-one'), image, sourceDateEpoch: SDE })
    const b = await packOciImage({ sourceDir: join(root, 'two'), layoutDir: join(root, 'layout-two'), image, sourceDateEpoch: SDE })
    expect(a.manifestDigest).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(b).toEqual(a)
    expect(a.layerDigests).toHaveLength(1)
    expect((await hashOutput(join(root, 'layout-two'))).narSha256).toBe((await hashOutput(join(root, 'layout-one'))).narSha256)

    // The layer: sorted by name bytes, root-owned, fixed modes and mtime, a PAX path for the long name.
    const layer = join(root, 'layout-one', 'blobs', 'sha256', a.layerDigests[0].slice(7))
    const { stdout } = await execFileP('tar', ['-tvf', layer, '--numeric-owner', '--full-time'], { env: { TZ: 'UTC', LC_ALL: 'C', PATH: process.env.PATH ?? '/usr/bin:/bin' } })
    const when = '2024-04-05 19:34:38'
    expect(stdout.trim().split('\n').map(l => l.replace(/ +/g, ' '))).toEqual([
      `-rw-r--r-- 0/0 24 ${when} a-b`,
      `drwxr-xr-x 0/0 0 ${when} app/`,
      `-rw-r--r-- 0/0 8 ${when} app/README`,
      `drwxr-xr-x 0/0 0 ${when} app/bin/`,
      `-rwxr-xr-x 0/0 21 ${when} app/bin/hello`,
      `lrwxrwxrwx 0/0 0 ${when} hello -> app/bin/hello`,
      `drwxr-xr-x 0/0 0 ${when} ${LONG}/`,
      `-rw-r--r-- 0/0 22 ${when} ${LONG}/inner.txt`
    ])
    const bytes = await readFile(layer)
    expect(bytes.length % 512).toBe(0)
    expect(bytes.subarray(265, 265 + 64).every(c => c === 0)).toBe(true) // no user or group names
    expect(`sha256:${createHash('sha256').update(bytes).digest('hex')}`).toBe(a.layerDigests[0])

    // skopeo reads the layout and agrees on the digest, layers and config.
    const ref = `oci:${join(root, 'layout-one')}:example.org/demo:1.0`
    const inspected = await skopeo('inspect', ref)
    expect(inspected.Digest).toBe(a.manifestDigest)
    expect(inspected.Layers).toEqual(a.layerDigests)
    expect(inspected.Created).toBe('2024-04-05T19:34:38Z')
    expect(inspected.Os).toBe('linux')
    const config = await skopeo('inspect', '--config', ref) as { config: Record<string, unknown>, rootfs: { diff_ids: string[] } }
    expect(config.config).toEqual({ Cmd: ['/app/bin/hello'], Env: ['PATH=/app/bin'], ExposedPorts: { '8080/tcp': {} }, Labels: { team: 'q' }, WorkingDir: '/app' })
    expect(config.rootfs.diff_ids).toEqual(a.layerDigests)
    const index = JSON.parse(await readFile(join(root, 'layout-one', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string, annotations: Record<string, string> }> }
    expect(index.manifests).toEqual([expect.objectContaining({ digest: a.manifestDigest, annotations: { 'org.opencontainers.image.ref.name': 'example.org/demo:1.0' } })])
    expect(JSON.parse(await readFile(join(root, 'layout-one', 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' })
  })

  it('stacks the output on a base image given by digest, verifying every blob', async () => {
    const root = await temp.make()
    await mkdir(join(root, 'base-src', 'etc'), { recursive: true })
    await writeFile(join(root, 'base-src', 'etc', 'motd'), 'base\n')
    const base = await packOciImage({ sourceDir: join(root, 'base-src'), layoutDir: join(root, 'base'), image: { refName: 'base', config: { Env: ['A=1'], User: 'nobody' } }, sourceDateEpoch: 1_600_000_000 })
    // Like a base fetched from a registry: skopeo copies it into a layout of its own and
    // gzips the layer, so the fetched image has a digest of its own.
    await execFileP('skopeo', ['copy', '--quiet', `oci:${join(root, 'base')}:base`, `oci:${join(root, 'fetched')}:base`])
    const fetched = await skopeo('inspect', `oci:${join(root, 'fetched')}:base`) as { Digest: string, Layers: string[] }
    expect(fetched.Digest).not.toBe(base.manifestDigest)
    await mkdir(join(root, 'app'))
    await writeFile(join(root, 'app', 'run'), 'app\n')
    const image = { refName: 'app', config: { Cmd: ['/run'] }, base: { layoutDir: join(root, 'fetched'), digest: fetched.Digest } }
    const top = await packOciImage({ sourceDir: join(root, 'app'), layoutDir: join(root, 'out'), image, sourceDateEpoch: SDE })
    expect(top.layerDigests).toHaveLength(2)
    expect(top.layerDigests[0]).toBe(fetched.Layers[0]) // the base layer as it was, compressed
    const inspected = await skopeo('inspect', `oci:${join(root, 'out')}:app`)
    expect(inspected.Digest).toBe(top.manifestDigest)
    expect(inspected.Layers).toEqual(top.layerDigests)
    const config = await skopeo('inspect', '--config', `oci:${join(root, 'out')}:app`) as { config: Record<string, unknown>, history: unknown[] }
    expect(config.config).toEqual({ Env: ['A=1'], User: 'nobody', Cmd: ['/run'] }) // base settings kept, ours added
    expect(config.history).toHaveLength(2)
    const again = await packOciImage({ sourceDir: join(root, 'app'), layoutDir: join(root, 'out2'), image, sourceDateEpoch: SDE })
    expect(again.manifestDigest).toBe(top.manifestDigest)

    // A tampered base blob is refused.
    await writeFile(join(root, 'fetched', 'blobs', 'sha256', fetched.Layers[0].slice(7)), 'not the layer')
    const err = await packOciImage({ sourceDir: join(root, 'app'), layoutDir: join(root, 'out3'), image, sourceDateEpoch: SDE }).catch((e: unknown) => e)
    expect(isQuorateError(err, 'OUTPUT_INVALID')).toBe(true)
    expect((err as Error).message).toBe(`the base image ${fetched.Digest}: blob ${fetched.Layers[0]} in ${join(root, 'fetched')} does not match its digest`)
    const missing = await packOciImage({ sourceDir: join(root, 'app'), layoutDir: join(root, 'out4'), image: { ...image, base: { layoutDir: join(root, 'fetched'), digest: `sha256:${'0'.repeat(64)}` } }, sourceDateEpoch: SDE }).catch((e: unknown) => e)
    expect((missing as Error).message).toContain('is missing from')
  })

  it('validates recipe.image with errors that name the field', () => {
    const message = (raw: unknown): string => {
      try {
        parseImageSpec(raw, 'policy.json: repositories[0].recipe.image')
      } catch (err) {
        expect(isQuorateError(err, 'RECIPE_INVALID')).toBe(true)
        return (err as Error).message
      }
      return 'accepted'
    }
    expect(parseImageSpec({ refName: 'app:1.0', config: { Cmd: ['/app'], ExposedPorts: ['80'] }, base: { layout: 'base', digest: `sha256:${'a'.repeat(64)}` } }, 'x'))
      .toEqual({ refName: 'app:1.0', config: { Cmd: ['/app'], ExposedPorts: ['80'] }, base: { layout: 'base', digest: `sha256:${'a'.repeat(64)}` } })
    expect(message('app')).toMatch(/^policy.json: repositories\[0\].recipe.image: must be an object/)
    expect(message({ refname: 'x' })).toBe('policy.json: repositories[0].recipe.image.refname: unknown field; allowed: config, refName, base, architecture')
    expect(message({ refName: 'has space' })).toMatch(/^policy.json: repositories\[0\].recipe.image.refName: must be an OCI ref name/)
    expect(message({ refName: 'a..b' })).toMatch(/\.refName: must be an OCI ref name/)
    expect(message({ config: { Env: ['NOEQUALS'] } })).toBe('policy.json: repositories[0].recipe.image.config.Env: must be an array of "NAME=value" strings')
    expect(message({ config: { Cmd: 'make' } })).toBe('policy.json: repositories[0].recipe.image.config.Cmd: must be an array of strings')
    expect(message({ config: { WorkingDir: 'app' } })).toMatch(/\.config.WorkingDir: must be an absolute path/)
    expect(message({ config: { ExposedPorts: ['http'] } })).toMatch(/\.config.ExposedPorts: must be an array of ports/)
    expect(message({ config: { Labels: { a: 1 } } })).toMatch(/\.config.Labels: must be an object of string values/)
    expect(message({ config: { Volumes: {} } })).toMatch(/\.config.Volumes: unknown field/)
    expect(message({ base: { layout: 'b', digest: 'sha256:abc' } })).toMatch(/\.base.digest: must be the base image manifest digest/)
    expect(message({ base: { layout: '../b', digest: `sha256:${'a'.repeat(64)}` } })).toMatch(/\.base.layout: must be a relative path inside the checkout/)
    expect(message({ architecture: 'AMD 64' })).toMatch(/\.architecture: must be a GOARCH name/)
  })

  it('runBuild packs an "oci" output after the build and reports the image as an extra subject', async () => {
    const root = await temp.make()
    await chmod(root, 0o755) // the work dirs are in it: a root node's build user must reach them
    const repo = await makeRepo(join(root, 'repo'))
    const commit = await commitFiles(repo, { 'hello.sh': '#!/bin/sh\necho hello\n' }, 'image project', SDE)
    const mirror = new GitMirror({ url: repo, dir: join(root, 'mirror.git') })
    await mirror.fetch()
    const build = async (recipe: Partial<Recipe>, n: number, sandbox: 'bwrap' | 'none' = 'none'): Promise<Awaited<ReturnType<typeof runBuild>>> => await runBuild({
      repoId: 'demo', commit, ref: 'refs/heads/main', mirror,
      workDir: join(root, `work-${n}`), outputCopyDir: join(root, `copy-${n}`),
      recipe: { build: ['sh', '-c', 'mkdir -p out/app && cp hello.sh out/app/hello && chmod 755 out/app/hello && touch out/app/now'], output: 'out', outputKind: 'oci', ...recipe },
      limits: { ...DEFAULT_RECIPE_LIMITS, timeoutSeconds: 30 },
      sandbox
    })
    const phases: string[] = []
    const image = { refName: 'demo/app:1.0', config: { Cmd: ['/app/hello'] } }
    const a = await runBuild({
      repoId: 'demo', commit, ref: 'refs/heads/main', mirror, workDir: join(root, 'work-0'), outputCopyDir: join(root, 'copy-0'),
      recipe: { build: ['sh', '-c', 'mkdir -p out/app && cp hello.sh out/app/hello && chmod 755 out/app/hello && touch out/app/now'], output: 'out', outputKind: 'oci', image },
      limits: { ...DEFAULT_RECIPE_LIMITS, timeoutSeconds: 30 }, sandbox: 'bwrap', onProgress: p => phases.push(p)
    })
    const b = await build({ image }, 1)
    if (!a.ok || !b.ok) throw new Error(JSON.stringify(a.ok ? b : a))
    expect(phases).toEqual(['checkout', 'build', 'pack', 'hash'])
    expect(a.images).toEqual([{ name: 'demo/app:1.0', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) }])
    expect(b.images).toEqual(a.images) // with and without the sandbox, at different times
    expect(b.output.narSha256).toBe(a.output.narSha256) // the digest covers the image layout
    expect(a.durationsMs.pack).toBeGreaterThan(0)
    expect(await readdir(join(root, 'copy-0'))).toEqual(['blobs', 'index.json', 'oci-layout'])
    expect((await hashOutput(join(root, 'copy-0'))).narSha256).toBe(a.output.narSha256)
    const inspected = await skopeo('inspect', `oci:${join(root, 'copy-0')}:demo/app:1.0`)
    expect(inspected.Digest).toBe(`sha256:${a.images?.[0].sha256}`)
    expect(inspected.Layers).toHaveLength(1)

    const unnamed = await build({}, 2)
    expect(unnamed.ok && unnamed.images?.[0].name).toBe(`demo:${commit}`)
    // recipe.image is validated once, when the recipe is parsed (policy or .quorate/recipe.json): never re-parsed by the runner.
    expect(() => parseRecipeSpec({ build: ['true'], output: 'out', outputKind: 'oci', image: { refName: 'no spaces allowed' } }, 'recipe')).toThrow(/^recipe.image.refName: must be an OCI ref name/)
    const notDir = await build({ build: ['sh', '-c', 'echo x > out'] }, 4)
    expect(notDir.ok === false && notDir.reason).toBe('the recipe\'s output path out is not a directory; an OCI image ("outputKind": "oci") is packed from a directory')
    const noBase = await build({ image: { base: { layout: 'base', digest: `sha256:${'b'.repeat(64)}` } } }, 5)
    expect(noBase.ok === false && noBase.reason).toMatch(/^the base image layout base \(recipe.image.base.layout\) was not found in the checkout/)
  })
})
