// Pinned build roots end to end (issue 8's headline): two real node processes of two
// organizations whose hosts have different compilers (one node runs in a private mount
// namespace where the host's gcc is GCC 11, the other sees GCC 12) build one C project.
// Without a root they disagree: disputed, and the audit names the compiler. With the same
// pinned root (a Debian image with gcc, from a real registry on 127.0.0.1) they agree and the
// commit is trusted; `quorate rebuild` reproduces the trusted digest from outside the network.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { chmodSync, existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { detectSandbox } from '@quorate/builder'
// @ts-expect-error plain JS helper shared with the demo
import { commitAll, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli } from '../scripts/devnet.js'
import { debianRootLayout, pushLayout, startRegistry, type Registry } from '../packages/builder/test/root-fixture.js'

interface DevNode { name: string, org: string, url: string, dir: string, config: string, member: { multiaddr: string }, log?: string }

const GCC11 = '/usr/bin/x86_64-linux-gnu-gcc-11'
const GCC12 = '/usr/bin/x86_64-linux-gnu-gcc-12'

let work: string
let registry: Registry
let net: { nodes: DevNode[], policyFile: string, repoId: string }
let commit: string
let image: string
const missingImage = (): string => `${registry.host}/build/bookworm-gcc@sha256:${'4'.repeat(64)}`

const C_RECIPE = {
  build: ['sh', '-c', 'mkdir -p out && gcc -O2 -o out/hello hello.c && gcc --version | head -1 > out/compiler.txt'],
  output: 'out',
  outputKind: 'dir',
  timeoutSeconds: 300
}

async function decision (node: DevNode, repoId: string): Promise<any> {
  return await getJson(`${node.url}/v1/repos/${repoId}/commits/${commit}`)
}

async function settled (repoId: string, status: string): Promise<any> {
  return await waitFor(async () => {
    const d = await decision(net.nodes[0], repoId)
    return d.decision.status === status ? d : undefined
  }, { timeoutMs: 240_000, intervalMs: 500, what: `${repoId}@${commit.slice(0, 8)} to be ${status}` })
}

beforeAll(async () => {
  if (await detectSandbox() === null) throw new Error('bubblewrap is needed for build roots (apt-get install bubblewrap)')
  for (const gcc of [GCC11, GCC12]) if (!existsSync(gcc)) throw new Error(`${gcc} is missing: apt-get install ${gcc.endsWith('11') ? 'gcc-11' : 'gcc-12'}`)
  work = mkdtempSync(join(tmpdir(), 'quorate-roots-e2e-'))
  chmodSync(work, 0o755) // the build user of a root node must reach the root cache under it
  const layout = await debianRootLayout()
  registry = await startRegistry()
  await pushLayout(layout.dir, `${registry.host}/build/bookworm-gcc:v1`)
  image = `${registry.host}/build/bookworm-gcc@${layout.manifestDigest}`

  const repoDir = join(work, 'repo')
  mkdirSync(repoDir)
  execFileSync('git', ['init', '-q', '-b', 'main', repoDir])
  writeFileSync(join(repoDir, 'hello.c'), '#include <stdio.h>\nint main(void) { printf("hello from a pinned root\\n"); return 0; }\n')
  commit = commitAll(repoDir, 'a C program', 1_700_000_000)

  net = await initNetwork({
    dir: join(work, 'nodes'),
    repoId: 'c-host',
    repoUrl: repoDir,
    recipe: C_RECIPE,
    sandbox: 'bwrap',
    pollSeconds: 1,
    threshold: 2,
    builders: [{ name: 'a-1', org: 'org-a' }, { name: 'b-1', org: 'org-b' }]
  })
  // The same project with the root pinned, as a second repository of the same policy.
  const policy = JSON.parse(readFileSync(net.policyFile, 'utf8'))
  policy.repositories.push({ ...policy.repositories[0], id: 'c-root', recipe: { ...C_RECIPE, root: { image } }, requireRoot: true })
  // And a root the registry does not have: the node's trouble, never a signed failure.
  policy.repositories.push({ ...policy.repositories[0], id: 'c-missing', recipe: { ...C_RECIPE, root: { image: missingImage() } } })
  writeFileSync(net.policyFile, JSON.stringify(policy, null, 2))
  for (const n of net.nodes) {
    const cfg = JSON.parse(readFileSync(n.config, 'utf8'))
    // The root cache under the work dir, so that it goes with it (a root node's default sits beside its build area).
    cfg.roots = { cacheDir: join(work, `roots-${n.name}`), registries: { [registry.host]: { insecure: true } } }
    writeFileSync(n.config, JSON.stringify(cfg, null, 2))
  }
  // org-b's host has GCC 11 as its gcc: a private mount namespace for that node only.
  await startNodeProcess(net.nodes[0], {})
  await startNodeProcess(net.nodes[1], { wrap: ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', `mount --bind ${GCC11} ${GCC12} && exec "$@"`, 'sh'] })
}, 600_000)

afterAll(async () => {
  for (const n of net?.nodes ?? []) await stopNodeProcess(n)
  await registry?.stop()
  if (work !== undefined) rmSync(work, { recursive: true, force: true })
})

describe('two hosts with different compilers', () => {
  it('disagree without a root, and the audit names the compiler', async () => {
    const d = await settled('c-host', 'disputed')
    // Two results, one per organization: the compilers made different binaries.
    expect(d.decision.results.map((r: { supportingOrgs: string[] }) => r.supportingOrgs).sort()).toEqual([['org-a'], ['org-b']])
    expect(new Set(d.decision.results.map((r: { narSha256: string }) => r.narSha256)).size).toBe(2)
    const audit = await runCli(['audit', ...net.nodes.flatMap(n => ['--node', n.url]), '--policy', net.policyFile, '--repo', 'c-host', '--commit', commit])
    expect(audit.stdout).toMatch(/gcc/)
    expect(audit.stdout).toMatch(/12\.2\.0/)
    expect(audit.stdout).toMatch(/11\.3\.0/)
    expect(audit.stdout).toMatch(/no common build root: the builders used their hosts' toolchains, which differ/)
  })

  it('agree with the same pinned root: trusted, and the fingerprints record the root digest', async () => {
    const d = await settled('c-root', 'trusted')
    expect(d.decision.trusted.supportingOrgs).toEqual(['org-a', 'org-b'])
    const statements = d.envelopes.map((e: any) => JSON.parse(Buffer.from(e.payload, 'base64').toString()))
      .filter((s: any) => s.predicateType === 'https://slsa.dev/provenance/v1')
    expect(statements).toHaveLength(2)
    for (const s of statements) {
      expect(s.predicate.buildDefinition.internalParameters.root.manifestDigest).toBe(image.slice(image.indexOf('@') + 1))
      expect(s.predicate.buildDefinition.externalParameters.recipe.root).toEqual({ image })
    }
  })

  it('quorate rebuild reproduces the trusted digest from outside the network', async () => {
    const trusted = (await settled('c-root', 'trusted')).decision.trusted.narSha256
    const r = await runCli(['rebuild', '--policy', net.policyFile, '--repo', 'c-root', '--commit', commit, '--root-cache', join(work, 'rebuild-roots'),
      '--insecure-registry', registry.host, ...net.nodes.flatMap(n => ['--node', n.url])])
    expect(r.stderr).toMatch(/MATCH/)
    expect(r.stdout.trim()).toBe(trusted)
    expect(r.code).toBe(0)
  })

  it('says which root it cannot pull and what the registry answered, signs nothing for it, and keeps the job waiting', async () => {
    const status = await waitFor(async () => {
      const st = await getJson(`${net.nodes[0].url}/v1/status`)
      return st.rootProblems?.some((p: any) => p.image === missingImage()) === true ? st : undefined
    }, { timeoutMs: 60_000, what: 'the root problem in /v1/status' })
    const p = status.rootProblems.find((x: any) => x.image === missingImage())
    expect(p.problem).toContain(`build root ${missingImage()}: ${registry.host} answered:`)
    expect(p.problem).toMatch(/manifest unknown|not found/i)
    const d = await decision(net.nodes[0], 'c-missing')
    expect(d.decision.failures).toEqual([])
    expect(d.envelopes.filter((e: any) => JSON.parse(Buffer.from(e.payload, 'base64').toString()).predicateType !== 'https://quorate.dev/attestation/ref-observation/v2')).toEqual([])
  })
})
