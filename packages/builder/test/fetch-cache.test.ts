import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomUUID } from 'node:crypto'
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile, symlink, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_RECIPE_LIMITS, type Recipe, type RecipeLimits } from '@quorate/core'
import { FetchCache, GitMirror, parseFetchCacheConfig, prepareBuildArea, resolveBuildUser, runBuild, type BuildOutcome, type BuildSuccess } from '../src/index.js'
import { commitFiles, execFileP, makeRepo, tempDirs } from './helpers.js'

const LIMITS: RecipeLimits = { ...DEFAULT_RECIPE_LIMITS, timeoutSeconds: 120, maxLogBytes: 256 * 1024 }

/** A gzipped npm package tarball (`package/…`) made with tar, as npm publishes them. */
async function packTarball (dir: string, name: string, files: Record<string, string>): Promise<Buffer> {
  const src = join(dir, `${name}-src`)
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(src, 'package', path, '..'), { recursive: true })
    await writeFile(join(src, 'package', path), content)
  }
  const out = join(dir, `${name}.tgz`)
  await execFileP('tar', ['-C', src, '--sort=name', '--mtime=@0', '--owner=0', '--group=0', '-czf', out, 'package'])
  return await readFile(out)
}

function ip (...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

/** The content path cacache gives bytes under sha512 (relative to `_cacache/content-v2`). */
function contentPath (bytes: Buffer): string {
  const hex = createHash('sha512').update(bytes).digest('hex')
  return `sha512/${hex.slice(0, 2)}/${hex.slice(2, 4)}/${hex.slice(4)}`
}

function ok (outcome: BuildOutcome): BuildSuccess {
  if (!outcome.ok) throw new Error(`build failed: ${outcome.reason}\n${outcome.log.tail}`)
  return outcome
}

// A real npm (the host's, run inside the sandbox) against a tiny registry on a test host that
// only the fetch phase's allowed range reaches: the fetch phase never sees the host's loopback.
describe('the npm fetch cache', () => {
  const temp = tempDirs()
  afterEach(temp.cleanup)
  const tag = `f${process.pid % 10000}`
  const ns = `${tag}-registry`
  const subnet = `10.${149 - (process.pid % 50)}.9`
  const registryHost = `${subnet}.2`
  const registryPort = 19000 + (process.pid % 1000)
  const registry = `http://${registryHost}:${registryPort}`
  let server: ChildProcess | undefined
  let root: string
  let area: string
  let mirror: GitMirror
  let good: Buffer
  const commits: Record<string, string> = {}

  /** Tarball downloads the registry has served so far. */
  async function downloads (): Promise<number> {
    const res = await fetch(`${registry}/__count`)
    return Number(await res.text())
  }

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'quorate-fetchcache-'))
    area = await prepareBuildArea({ user: resolveBuildUser(), dataDir: join(root, 'data'), defaultDir: join(root, 'data', 'work') })
    const tarballs = join(root, 'tarballs')
    await mkdir(tarballs)
    good = await packTarball(root, 'tiny-dep', { 'package.json': '{"name":"tiny-dep","version":"1.0.0","main":"index.js"}\n', 'index.js': 'module.exports = "good"\n' })
    await writeFile(join(tarballs, 'tiny-dep-1.0.0.tgz'), good)
    // What a hostile commit plants in the cache: the same package with other code and an extra file.
    const evil = await packTarball(root, 'evil', { 'package.json': '{"name":"tiny-dep","version":"1.0.0","main":"index.js"}\n', 'index.js': 'module.exports = "evil"\n', 'evil.js': 'pwned\n' })

    try { ip('netns', 'del', ns) } catch {}
    ip('netns', 'add', ns)
    ip('link', 'add', `${tag}h`, 'type', 'veth', 'peer', 'name', `${tag}n`)
    ip('link', 'set', `${tag}n`, 'netns', ns)
    ip('addr', 'add', `${subnet}.1/30`, 'dev', `${tag}h`)
    ip('link', 'set', `${tag}h`, 'up')
    ip('-n', ns, 'addr', 'add', `${registryHost}/30`, 'dev', `${tag}n`)
    ip('-n', ns, 'link', 'set', `${tag}n`, 'up')
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    const script = `
      const fs = require('fs'); const path = require('path'); let count = 0
      require('http').createServer((req, res) => {
        if (req.url === '/__count') return res.end(String(count))
        const m = /^\\/[^/]+\\/-\\/([a-z0-9.-]+\\.tgz)$/.exec(req.url)
        if (m === null) { res.statusCode = 404; return res.end('{}') }
        count++
        res.setHeader('content-type', 'application/octet-stream')
        res.end(fs.readFileSync(path.join(${JSON.stringify(tarballs)}, m[1])))
      }).listen(${registryPort}, ${JSON.stringify(registryHost)}, () => console.log('up'))`
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    server = child
    await new Promise<void>((resolve, reject) => {
      child.stdout?.once('data', () => resolve())
      child.once('exit', code => reject(new Error(`registry exited with ${String(code)}`)))
    })

    const integrity = `sha512-${createHash('sha512').update(good).digest('base64')}`
    const project = {
      'package.json': '{"name":"app","version":"1.0.0","dependencies":{"tiny-dep":"1.0.0"}}\n',
      'package-lock.json': JSON.stringify({
        name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true,
        packages: {
          '': { name: 'app', version: '1.0.0', dependencies: { 'tiny-dep': '1.0.0' } },
          'node_modules/tiny-dep': { version: '1.0.0', resolved: `${registry}/tiny-dep/-/tiny-dep-1.0.0.tgz`, integrity }
        }
      }, null, 2) + '\n',
      '.npmrc': `registry=${registry}/\n`
    }
    const repo = await makeRepo(join(root, 'repo'))
    commits.first = await commitFiles(repo, { ...project, 'README': 'one\n' }, 'first', 1_700_000_000)
    commits.second = await commitFiles(repo, { 'README': 'two\n' }, 'second', 1_700_000_100)
    // A hostile commit: its fetch phase installs, then rewrites the cached tarball (an extra file,
    // other code), adds other content under its own name with an index entry sending the
    // tarball's URL there, a symlink, and npx and log directories.
    await writeFile(join(repo, 'evil.tgz'), evil)
    const poison = [
      'set -e',
      'npm ci --ignore-scripts --no-audit --no-fund',
      'c=$HOME/.npm/_cacache',
      `f="$c/content-v2/${contentPath(good)}"; rm -f "$f"; cp evil.tgz "$f"`,
      `e="$c/content-v2/${contentPath(evil)}"; mkdir -p "\${e%/*}"; cp evil.tgz "$e"`,
      'for f in $(find "$c/index-v5" -type f); do sed -i "s/sha512-[A-Za-z0-9+\\/=]*/sha512-EVIL/g" "$f"; done',
      'ln -s /build/src/evil.tgz "$c/content-v2/sha512/00"',
      'mkdir -p "$c/content-v2/sha1/aa/bb" "$HOME/.npm/_npx/x" && echo x > "$HOME/.npm/_npx/x/run.js" && cp evil.tgz "$c/content-v2/sha1/aa/bb/cc"'
    ].join('\n')
    await writeFile(join(repo, 'poison.sh'), poison)
    commits.hostile = await commitFiles(repo, { 'README': 'hostile\n' }, 'hostile', 1_700_000_200)
    await execFileP('git', ['-C', repo, 'rm', '-q', 'evil.tgz', 'poison.sh'])
    commits.after = await commitFiles(repo, { 'README': 'after\n' }, 'after', 1_700_000_300)
    mirror = new GitMirror({ url: repo, dir: join(root, 'mirror.git') })
    await mirror.fetch()
  }, 60_000)

  afterAll(async () => {
    server?.kill()
    try { ip('link', 'del', `${tag}h`) } catch {}
    try { ip('netns', 'del', ns) } catch {}
    if (root !== undefined) await rm(root, { recursive: true, force: true })
    if (area !== undefined) {
      await rm(area, { recursive: true, force: true })
      for (const name of await readdir(tmpdir())) {
        if (join(tmpdir(), name).startsWith(`${area}-fetch-cache-`)) await rm(join(tmpdir(), name), { recursive: true, force: true })
      }
    }
  })

  const recipe = (fetchArgv: string[] = ['npm', 'ci', '--ignore-scripts', '--no-audit', '--no-fund']): Recipe => ({
    fetch: fetchArgv,
    // Everything npm installed, byte for byte, and the commit's own file.
    build: ['sh', '-c', 'mkdir out && cp -r node_modules/tiny-dep README out/'],
    output: 'out',
    outputKind: 'dir'
  })

  const build = async (commit: string, cache?: FetchCache, r: Recipe = recipe(), limits: RecipeLimits = LIMITS): Promise<BuildOutcome> => await runBuild({
    repoId: 'app',
    commit,
    ref: 'refs/heads/main',
    mirror,
    workDir: join(area, randomUUID()),
    recipe: r,
    limits,
    sandbox: 'bwrap',
    fetchNetwork: { deny: [], allow: [`${subnet}.0/24`] },
    ...(cache !== undefined ? { fetchCache: cache } : {})
  })

  // Where a root node keeps them: beside its build area, reachable by the build user.
  const newCache = (maxBytes?: number): FetchCache =>
    new FetchCache({ dir: `${area}-fetch-cache-${randomUUID()}`, user: resolveBuildUser(), ...(maxBytes !== undefined ? { maxBytes } : {}) })

  it('lets a later commit with the same lockfile install without downloading, with the same output as without the cache', async () => {
    const cache = newCache()
    const n0 = await downloads()
    const plainSecond = ok(await build(commits.second))
    expect(await downloads()).toBe(n0 + 1)
    const first = ok(await build(commits.first, cache))
    expect(await downloads()).toBe(n0 + 2)
    const second = ok(await build(commits.second, cache))
    // npm found the tarball by the lockfile's integrity in the cache: no download at all.
    expect(await downloads()).toBe(n0 + 2)
    expect(second.output.narSha256).toBe(plainSecond.output.narSha256)
    expect(second.output.narSha256).not.toBe(first.output.narSha256) // the commits' READMEs differ
    expect(second.log.tail).toContain('fetch cache: npm\'s cache of earlier builds of this repository at $HOME/.npm (1 entries')
    // The cache holds the tarball's content only, under the build user, and nothing else of npm's.
    const keyDir = cache.keyDir('app')
    const npmDir = join(keyDir, 'npm')
    expect(await readdir(npmDir)).toEqual(['_cacache'])
    expect(await readdir(join(npmDir, '_cacache'))).toEqual(['content-v2'])
    expect(await readFile(join(npmDir, '_cacache', 'content-v2', contentPath(good)))).toEqual(good)
    expect((await stat(npmDir)).uid).toBe(resolveBuildUser().uid)
  }, 120_000)

  it('keeps a commit that poisons the cache in its fetch phase from changing the next commit\'s output', async () => {
    const cache = newCache()
    const clean = ok(await build(commits.after))
    const hostile = ok(await build(commits.hostile, cache, recipe(['sh', 'poison.sh'])))
    const n0 = await downloads()
    const after = ok(await build(commits.after, cache))
    // The node dropped the rewritten tarball (its bytes no longer hash to its name) and npm
    // downloaded it again: same output as a build that never saw the cache, no extra file.
    expect(after.output.narSha256).toBe(clean.output.narSha256)
    expect(after.output.fileList.files.map(f => f.path)).not.toContain('tiny-dep/evil.js')
    expect(await downloads()).toBe(n0 + 1)
    // The node's check after the hostile fetch phase: the rewritten tarball, the symlink and the
    // SHA-1 tree went; the other content is genuine under its own name (no lockfile of the
    // repository names it, so no build reads it) and stays.
    expect(hostile.log.tail).toMatch(/fetch cache after the fetch phase: 1 entries, \d+ bytes; 3 damaged or foreign entries removed/)
    // npm's own check alone would not have been enough: it refetches a corrupted tarball but
    // extracts it over what the corrupted copy wrote (evil.js survives). Shown in the README.
  }, 120_000)

  it('counts what the fetch phase writes to the cache against maxOutputBytes', async () => {
    const cache = newCache()
    const MiB = 1024 * 1024
    // 1 MiB files (none over the per-file limit) into npm's cache, without end.
    const endless = ['sh', '-c', 'mkdir -p $HOME/.npm/junk && i=0; while :; do i=$((i+1)); head -c 1048576 /dev/zero > $HOME/.npm/junk/$i; done']
    const started = Date.now()
    const outcome = await build(commits.first, cache, recipe(endless), { ...LIMITS, maxOutputBytes: 20 * MiB })
    expect(Date.now() - started).toBeLessThan(30_000)
    expect(outcome.ok === false && outcome.reason).toBe("the build wrote more than 20971520 bytes (the recipe's maxOutputBytes) to its work directory and the fetch cache; every process of the build was killed")
    // And the node removed it again.
    expect(await readdir(join(cache.keyDir('app'), 'npm'))).toEqual(['_cacache'])
  }, 120_000)

  it('trims a cache over maxBytes after the fetch phase', async () => {
    const cache = newCache(good.length - 1)
    const n0 = await downloads()
    const first = ok(await build(commits.first, cache))
    expect(first.log.tail).toContain('0 entries, 0 bytes; 1 oldest entries evicted to stay within maxBytes')
    ok(await build(commits.second, cache))
    expect(await downloads()).toBe(n0 + 2)
  }, 120_000)
})

describe('FetchCache (the node-side check)', () => {
  const temp = tempDirs()
  afterEach(temp.cleanup)
  const user = resolveBuildUser()
  /** A temp dir the build user can search (a node keeps its caches in one). */
  const reachable = async (): Promise<string> => {
    const dir = await temp.make()
    await chmod(dir, 0o711)
    return dir
  }

  async function plant (npmDir: string, bytes: Buffer, algo = 'sha512'): Promise<string> {
    const hex = createHash(algo).update(bytes).digest('hex')
    const dir = join(npmDir, '_cacache', 'content-v2', algo, hex.slice(0, 2), hex.slice(2, 4))
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, hex.slice(4)), bytes)
    return join(dir, hex.slice(4))
  }

  it('keeps only content that hashes to its name and removes everything else', async () => {
    const cache = new FetchCache({ dir: join(await reachable(), 'fc'), user })
    let lease = await cache.acquire('app')
    const genuine = await plant(lease.npmDir, Buffer.from('genuine'))
    const forged = await plant(lease.npmDir, Buffer.from('original'))
    await writeFile(forged, 'replaced')
    const weak = await plant(lease.npmDir, Buffer.from('sha1 content'), 'sha1')
    await mkdir(join(lease.npmDir, '_cacache', 'index-v5', 'aa'), { recursive: true })
    await writeFile(join(lease.npmDir, '_cacache', 'index-v5', 'aa', 'x'), 'entry')
    await mkdir(join(lease.npmDir, '_npx'))
    await symlink('/etc/passwd', join(lease.npmDir, '_cacache', 'content-v2', 'sha512', 'ff'))
    const report = await lease.release()
    expect(report).toMatchObject({ entries: 1, bytes: 7, rejected: 3, evicted: 0 })
    expect(await readFile(genuine, 'utf8')).toBe('genuine')
    await expect(stat(forged)).rejects.toThrow()
    await expect(stat(weak)).rejects.toThrow()
    expect(await readdir(lease.npmDir)).toEqual(['_cacache'])
    expect(await readdir(join(lease.npmDir, '_cacache'))).toEqual(['content-v2'])
    expect(await readdir(join(lease.npmDir, '_cacache', 'content-v2', 'sha512'))).toEqual([genuine.split('/').at(-3)])
    // A change after the last check is found by the next one (the node keeps size, inode and times).
    await writeFile(genuine, 'genuinX')
    lease = await cache.acquire('app')
    expect(lease.before).toMatchObject({ entries: 0, rejected: 1 })
    await lease.release()
  })

  it('evicts the oldest entries beyond maxBytes, and removes caches unused for maxAgeDays', async () => {
    let now = 1_000_000
    const cache = new FetchCache({ dir: join(await reachable(), 'fc'), user, maxBytes: 2500, maxAgeDays: 1, now: () => now })
    const paths: string[] = []
    let report
    for (const c of ['a', 'b', 'c']) {
      const lease = await cache.acquire('app')
      paths.push(await plant(lease.npmDir, Buffer.alloc(1000, c)))
      report = await lease.release()
      now += 1000
    }
    // 3000 bytes > 2500: the oldest goes, down to 80 % of maxBytes.
    expect(report).toMatchObject({ entries: 2, bytes: 2000, evicted: 1 })
    await expect(stat(paths[0])).rejects.toThrow()
    expect((await stat(paths[2])).size).toBe(1000)
    // Another repository's build, two days later, removes this unused cache.
    now += 2 * 86_400_000
    const other = await cache.acquire('other')
    await other.release()
    await expect(stat(cache.keyDir('app'))).rejects.toThrow()
    expect((await stat(cache.keyDir('other'))).isDirectory()).toBe(true)
  })

  it('gives one repository\'s cache to one build at a time, and keys it by build root', async () => {
    const cache = new FetchCache({ dir: join(await reachable(), 'fc'), user })
    const a = await cache.acquire('app')
    let second = false
    const b = cache.acquire('app').then(lease => { second = true; return lease })
    const rooted = await cache.acquire('app', `sha256:${'ab'.repeat(32)}`)
    expect(rooted.npmDir).toBe(join(cache.dir, 'app', `root-${'ab'.repeat(32)}`, 'npm'))
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(second).toBe(false)
    await a.release()
    await (await b).release()
    expect(second).toBe(true)
    await rooted.release()
    const stop = new AbortController()
    const held = await cache.acquire('app')
    const waiting = cache.acquire('app', undefined, stop.signal)
    stop.abort()
    await expect(waiting).rejects.toThrow(/cancelled/)
    await held.release()
    await (await cache.acquire('app')).release()
  })

  it('reads the node config\'s fetchCache', () => {
    expect(parseFetchCacheConfig(undefined, 'fetchCache')).toBeUndefined()
    expect(parseFetchCacheConfig({ npm: true }, 'fetchCache')).toEqual({ npm: true, maxBytes: 2 * 1024 ** 3, maxAgeDays: 30 })
    expect(parseFetchCacheConfig({ npm: true, maxBytes: 1000, dir: 'fc' }, 'fetchCache', p => `/base/${p}`)).toEqual({ npm: true, maxBytes: 1000, maxAgeDays: 30, dir: '/base/fc' })
    expect(parseFetchCacheConfig({ npm: false }, 'fetchCache')).toBeUndefined()
    expect(() => parseFetchCacheConfig({ cargo: true }, 'fetchCache')).toThrow(/fetchCache.cargo: unknown field.*not re-verified/)
    expect(() => parseFetchCacheConfig({ npm: true, maxBytes: -1 }, 'fetchCache')).toThrow(/fetchCache.maxBytes: must be a whole number/)
  })
})
