// Build-root fixtures shared by the tests and `npm run demo:roots`: OCI image layouts, a real
// OCI registry (Debian's docker-registry) on 127.0.0.1, and a Debian bookworm image with gcc
// built by mmdebstrap once per machine, cached under os.tmpdir()/quorate-root-cache/<version>.
import { spawn, execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, existsSync } from 'node:fs'
import { copyFile, link, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './devnet.js'

const execFileP = promisify(execFile)
const sha = (b) => createHash('sha256').update(b).digest('hex')

async function shaFile (path) {
  const h = createHash('sha256')
  let size = 0
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) { h.update(c); size += c.length }
  return { hex: h.digest('hex'), size }
}

/**
 * An OCI image layout with one manifest of uncompressed tar layers (bytes, or { file } moved
 * in by hard link or copy), tagged refName (default "root"). Deterministic for the same layers.
 * Returns { dir, manifestDigest, configDigest, layerDigests }.
 */
export async function ociLayout (dir, layers, o = {}) {
  const blobs = join(dir, 'blobs', 'sha256')
  await mkdir(blobs, { recursive: true })
  const put = async (bytes) => {
    const hex = sha(bytes)
    await writeFile(join(blobs, hex), bytes)
    return { digest: `sha256:${hex}`, size: bytes.length }
  }
  const layerDescs = []
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
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifestDesc, annotations: { 'org.opencontainers.image.ref.name': o.refName ?? 'root' } }]
  }))
  return { dir, manifestDigest: manifestDesc.digest, configDigest: configDesc.digest, layerDigests: layerDescs.map(d => d.digest) }
}

/** A real OCI registry (docker-registry) on 127.0.0.1 with a temp config and storage dir: { host, storage, stop() }. */
export async function startRegistry () {
  const dir = await mkdtemp(join(tmpdir(), 'quorate-registry-'))
  const port = await freePort()
  const storage = join(dir, 'storage')
  await mkdir(storage)
  const config = join(dir, 'config.yml')
  await writeFile(config, ['version: 0.1', 'log:', '  level: error', 'storage:', '  filesystem:', `    rootdirectory: ${storage}`, '  delete:', '    enabled: true', 'http:', `  addr: 127.0.0.1:${port}`, ''].join('\n'))
  const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += d.toString() })
  const host = `127.0.0.1:${port}`
  const deadline = Date.now() + 15_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`)
    if (await fetch(`http://${host}/v2/`).then(r => r.ok, () => false)) break
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

/** Pushes an OCI layout's image (ref name refName) to a loopback registry over plain HTTP, digests kept. */
export async function pushLayout (layout, target, refName = 'root', { all = false } = {}) {
  const policy = join(tmpdir(), 'quorate-skopeo-policy.json')
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }))
  await execFileP('skopeo', ['--policy', policy, 'copy', '--quiet', '--dest-tls-verify=false', '--preserve-digests', ...(all ? ['--all'] : []), `oci:${layout}:${refName}`, `docker://${target}`], { maxBuffer: 1 << 24 })
}

/** The path in the registry's storage of a blob's bytes (to make it serve wrong content). */
export function registryBlobPath (registry, digest) {
  const hex = digest.slice(7)
  return join(registry.storage, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')
}

/** Bump to rebuild the cached Debian image (different packages, suite or layout). */
export const DEBIAN_ROOT_VERSION = 'bookworm-gcc-make-v1'

/**
 * A Debian bookworm (minbase + gcc, make, libc6-dev) OCI layout, built with mmdebstrap once and
 * cached under os.tmpdir()/quorate-root-cache/<DEBIAN_ROOT_VERSION>. Returns the layout and how
 * long the build took (buildMs, 0 when cached).
 */
export async function debianRootLayout () {
  const base = join(tmpdir(), 'quorate-root-cache', DEBIAN_ROOT_VERSION)
  const done = join(base, 'layout.json')
  if (existsSync(done)) {
    const layout = JSON.parse(await readFile(done, 'utf8'))
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
    const final = { ...layout, dir: join(base, 'layout') }
    await writeFile(done, JSON.stringify(final))
    return { ...final, buildMs: performance.now() - t }
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}
