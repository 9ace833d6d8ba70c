// The node config's "fetchCache" reaches the builds of a real node process: what one commit's
// fetch phase leaves in npm's cache ($HOME/.npm, content-addressed) the next commit's fetch phase
// finds there, while the node (as root) keeps the cache beside its build area.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, addCommit, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, editConfig } from '../scripts/devnet.js'

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex')
const CONTENT = 'a cached npm tarball, byte for byte'
const hex = createHash('sha512').update(CONTENT).digest('hex')
const CACHED = `$HOME/.npm/_cacache/content-v2/sha512/${hex.slice(0, 2)}/${hex.slice(2, 4)}/${hex.slice(4)}`

let work: string
const started: any[] = []
/** A root node's build area and fetch cache live in the temp dir, outside its data dir. */
const outside: string[] = []
beforeAll(() => { work = mkdtempSync(join(tmpdir(), 'quorate-fetch-cache-node-')) })
afterAll(async () => {
  await Promise.all(started.map(async n => await stopNodeProcess(n)))
  rmSync(work, { recursive: true, force: true })
  for (const dir of outside) rmSync(dir, { recursive: true, force: true })
})

describe('fetchCache in node.json', () => {
  it('keeps npm\'s cache from one commit\'s fetch phase to the next commit\'s', async () => {
    const repo = join(work, 'repo')
    const first = createSampleRepo(repo)
    const second = addCommit(repo, 'VERSION', '1.0.1\n', 'a second commit, same dependencies')
    const recipe = {
      // Says whether the cache already held the entry, then puts it there as npm would.
      fetch: ['sh', '-c', `P="${CACHED}"; if [ -f "$P" ]; then echo hit > cache-state; else echo miss > cache-state; fi; mkdir -p "\${P%/*}"; printf '%s' '${CONTENT}' > "$P"`],
      build: ['sh', '-c', 'sh build.sh && cp cache-state dist/'],
      output: 'dist',
      outputKind: 'dir',
      timeoutSeconds: 120
    }
    const net = await initNetwork({ dir: join(work, 'net'), repoUrl: repo, recipe, sandbox: 'bwrap', pollSeconds: 1, builders: [{ name: 'a1', org: 'a' }] })
    const [node] = net.nodes
    editConfig(node, (cfg: any) => { cfg.fetchCache = { npm: true, maxBytes: 1_000_000 } })
    const cfg = JSON.parse(readFileSync(node.config, 'utf8'))
    const dataDir = resolve(node.dir, cfg.dataDir ?? 'data')
    const buildArea = join(tmpdir(), `quorate-builds-${sha256(dataDir).slice(0, 16)}`)
    const cacheDir = process.getuid?.() === 0 ? `${buildArea}-fetch-cache` : join(dataDir, 'fetch-cache')
    if (process.getuid?.() === 0) outside.push(buildArea, cacheDir)
    started.push(node)
    await startNodeProcess(node, {})
    for (const commit of [first, second]) {
      await waitFor(async () => (await getJson(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`).catch(() => null))?.decision?.status === 'trusted', { timeoutMs: 90_000, what: `${commit} trusted` })
    }
    // One build found the cache empty, the other found the first one's entry (in either order).
    for (const state of ['miss\n', 'hit\n']) {
      const res = await fetch(`${node.url}/v1/files/${sha256(state)}`)
      expect(res.status, state).toBe(200)
      expect(await res.text()).toBe(state)
    }
    // A root node keeps it beside its build area (quorate-builds-<hash of the data dir>), checked.
    expect(readFileSync(join(cacheDir, net.repoId, 'host', 'npm', '_cacache', 'content-v2', 'sha512', hex.slice(0, 2), hex.slice(2, 4), hex.slice(4)), 'utf8')).toBe(CONTENT)
    expect(existsSync(join(cacheDir, net.repoId, 'host', 'state.json'))).toBe(true)
  }, 180_000)
})
