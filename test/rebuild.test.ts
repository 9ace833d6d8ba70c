// `quorate rebuild` against a real node process: an outsider with only the policy reproduces
// the digest the network trusted, also for a project that embeds its build path (the sandbox
// gives the same fixed paths), and sees which file differs when it builds differently.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { detectSandbox } from '@quorate/builder'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli } from '../scripts/devnet.js'

let work: string
let net: any
let commit: string
let trusted: string

// Like lua's build, which records where it was built: the output holds the absolute build path.
const EMBEDS_PATH = { build: ['sh', '-c', 'mkdir -p out && pwd > out/built-in && cat VERSION >> out/built-in'], output: 'out', outputKind: 'dir' }

beforeAll(async () => {
  if (await detectSandbox() === null) throw new Error('bubblewrap is needed (apt-get install bubblewrap)')
  work = mkdtempSync(join(tmpdir(), 'quorate-rebuild-'))
  const repo = join(work, 'repo')
  commit = createSampleRepo(repo)
  net = await initNetwork({ dir: join(work, 'net'), repoUrl: repo, recipe: EMBEDS_PATH, sandbox: 'bwrap', pollSeconds: 1, builders: [{ name: 'r-b', org: 'r-org' }] })
  await startNodeProcess(net.nodes[0], {})
  const d = await waitFor(async () => {
    const r = await getJson(`${net.nodes[0].url}/v1/repos/${net.repoId}/commits/${commit}`)
    return r.decision.status === 'trusted' ? r : undefined
  }, { timeoutMs: 60_000, what: 'the commit to be trusted' })
  trusted = d.decision.trusted.narSha256
}, 120_000)

afterAll(async () => {
  for (const n of net?.nodes ?? []) await stopNodeProcess(n)
  if (work !== undefined) rmSync(work, { recursive: true, force: true })
})

describe('quorate rebuild', () => {
  it('reproduces the trusted digest of a path-embedding project from the policy alone, and says there is no pinned root', async () => {
    const out = join(work, 'out')
    const r = await runCli(['rebuild', '--policy', net.policyFile, '--repo', net.repoId, '--commit', commit, '--out', out, '--node', net.nodes[0].url])
    expect(r.stderr).toMatch(/pins no build root; building with this host's toolchain/)
    expect(r.stderr).toMatch(/MATCH: the rebuild with the host toolchain \(no build root pinned\) equals the quorum's trusted result/)
    expect(r.stdout.trim()).toBe(trusted)
    expect(r.code).toBe(0)
    expect(readFileSync(join(out, 'built-in'), 'utf8')).toBe('/build/src\n1.0.0\n')
  })

  it('names the differing file and exits 1 when the rebuild differs (no sandbox: another build path)', async () => {
    const r = await runCli(['rebuild', '--policy', net.policyFile, '--repo', net.repoId, '--commit', commit, '--sandbox', 'none', '--node', net.nodes[0].url, '--json'])
    expect(r.code).toBe(1)
    const report = JSON.parse(r.stdout)
    expect(report.network).toMatchObject({ status: 'trusted', trustedNarSha256: trusted, matches: false })
    expect(report.network.differences).toEqual(['differs (content): built-in'])
  })

  it('refuses a short commit id and an unknown repository with exit 2', async () => {
    const short = await runCli(['rebuild', '--policy', net.policyFile, '--repo', net.repoId, '--commit', commit.slice(0, 8)])
    expect(short.code).toBe(2)
    expect(short.stderr).toMatch(/--commit must be a full commit id/)
    const unknown = await runCli(['rebuild', '--policy', net.policyFile, '--repo', 'nope', '--commit', commit])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/has no repository "nope"/)
  })
})
