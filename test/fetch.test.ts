// `quorate fetch` against real node processes (issue 13): the trusted output downloaded from
// nodes that are not trusted. Each node is reached through a small HTTP proxy that can lie
// about output files (flip a byte, or claim not to have one), so a test chooses what each node
// serves without reaching into its store. The caller's policy lists no endpoints, so the
// proxies are the only sources.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { hashOutput } from '@quorate/builder'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, initNetwork, startNodeProcess, stopNodeProcess, waitFor, runCli, CLI } from '../scripts/devnet.js'
import { startRegistry, type Registry } from '../packages/builder/test/root-fixture.js'

interface DevNode { name: string, org: string, url: string }
interface Proxy { url: string, server: Server, corrupt: boolean, append: boolean, stall: boolean, hide: Set<string> }

let work: string
let repoDir: string
let net: { nodes: DevNode[], policyFile: string, repoId: string }
let commit: string
let policyFile: string
let proxies: Proxy[]
let registry: Registry | undefined

/** An HTTP proxy in front of one node; /v1/files answers can be corrupted or withheld. */
async function startProxy (target: string): Promise<Proxy> {
  const p: Proxy = { url: '', server: createServer(), corrupt: false, append: false, stall: false, hide: new Set() }
  p.server.on('request', (req, res) => {
    void (async () => {
      const m = /^\/v1\/files\/([0-9a-f]{64})$/.exec(req.url ?? '')
      if (m !== null && p.stall) { res.writeHead(200, { 'content-type': 'application/octet-stream' }); res.write('x'); return } // never ends
      if (m !== null && p.hide.has(m[1])) { res.writeHead(404, { 'content-type': 'application/json' }); res.end('{"error":"no such output file on this node"}'); return }
      const upstream = await fetch(`${target}${req.url ?? '/'}`)
      let body = Buffer.from(await upstream.arrayBuffer())
      if (m !== null && p.corrupt && upstream.ok && body.length > 0) body[0] ^= 0xff
      // The right bytes and then more: a reader that trusts the stream's length would take them.
      if (m !== null && p.append && upstream.ok) body = Buffer.concat([body, Buffer.alloc(1 << 20, 0x41)])
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/octet-stream' })
      res.end(body)
    })().catch(() => { res.writeHead(502); res.end() })
  })
  await new Promise<void>(resolve => p.server.listen(0, '127.0.0.1', resolve))
  p.url = `http://127.0.0.1:${(p.server.address() as { port: number }).port}`
  return p
}

const nodeArgs = (): string[] => proxies.flatMap(p => ['--node', p.url])

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'quorate-fetch-'))
  repoDir = join(work, 'repo')
  commit = createSampleRepo(repoDir)
  net = await initNetwork({
    dir: join(work, 'nodes'),
    repoUrl: repoDir,
    sandbox: 'none',
    pollSeconds: 1,
    recipe: { build: ['sh', 'build.sh'], output: 'dist', outputKind: 'oci', image: { refName: 'sample:fetched' }, timeoutSeconds: 120 },
    builders: [{ name: 'alpha-1', org: 'alpha' }, { name: 'beta-1', org: 'beta' }, { name: 'gamma-1', org: 'gamma' }]
  })
  await Promise.all(net.nodes.map(async n => await startNodeProcess(n, {})))
  proxies = await Promise.all(net.nodes.map(async n => await startProxy(n.url)))
  // The pipeline's own copy of the policy: the same builders and keys, no endpoints.
  const doc = JSON.parse(readFileSync(net.policyFile, 'utf8'))
  for (const b of doc.builders) delete b.endpoint
  policyFile = join(work, 'pipeline-policy.json')
  writeFileSync(policyFile, JSON.stringify(doc, null, 2))
  await waitFor(async () => {
    const r = await runCli(['verify', ...net.nodes.flatMap(n => ['--node', n.url]), '--policy', policyFile, '--repo', net.repoId, '--commit', commit])
    return r.code === 0
  }, { timeoutMs: 120_000, intervalMs: 1000, what: 'the quorum to trust the first commit' })
}, 180_000)

afterAll(async () => {
  for (const p of proxies ?? []) p.server.close()
  await registry?.stop()
  if (net !== undefined) await Promise.all(net.nodes.map(async n => await stopNodeProcess(n)))
  rmSync(work, { recursive: true, force: true })
})

function trustedNar (stdout: string): string { return (JSON.parse(stdout) as { narSha256: string }).narSha256 }

describe('quorate fetch from a network of untrusted nodes', () => {
  it('refuses the copies lying nodes serve (wrong bytes, too many bytes), fetches them from another node, and the tree verifies', async () => {
    proxies[0].corrupt = true
    proxies[1].append = true
    try {
      const out = join(work, 'out-corrupt')
      const r = await runCli(['fetch', ...nodeArgs(), '--policy', policyFile, '--repo', net.repoId, '--commit', commit, '--out', out, '--json'])
      expect(r.stderr).toMatch(/refused .* from http:\/\/127\.0\.0\.1:\d+: sent content that does not match its sha256; trying another node/)
      expect(r.stderr).toMatch(/PASSED: sample@[0-9a-f]{12}: fetched \d+ files \(\d+ bytes\) into .*narSha256 [0-9a-f]{64} verified/)
      expect(r.code).toBe(0)
      const report = JSON.parse(r.stdout)
      expect(report.rejected.length).toBeGreaterThan(0)
      expect(r.stderr).toMatch(/sent more than the \d+ bytes the file list declares/)
      expect(new Set(report.rejected.map((x: { url: string }) => x.url))).toEqual(new Set([proxies[0].url, proxies[1].url]))
      expect(Object.keys(report.servedBy)).toEqual([proxies[2].url])
      // The tree on disk is the trusted one, by an independent hash, and an OCI layout.
      expect((await hashOutput(out)).narSha256).toBe(report.narSha256)
      expect(readdirSync(out).sort()).toEqual(['blobs', 'index.json', 'oci-layout'])
      expect(readdirSync(work).filter(n => n.includes('quorate-fetch'))).toEqual([])
      // The same answer as verify --digest.
      const v = await runCli(['verify', ...nodeArgs(), '--policy', policyFile, '--repo', net.repoId, '--commit', commit, '--digest', trustedNar(r.stdout)])
      expect(v.code).toBe(0)
    } finally {
      proxies[0].corrupt = false
      proxies[1].append = false
    }
  })

  it('exits 2 and leaves nothing behind when no node serves one of the files', async () => {
    const list = JSON.parse(readFileSync(join(work, 'out-corrupt', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
    const manifest = list.manifests[0].digest.slice('sha256:'.length)
    for (const p of proxies) p.hide.add(manifest)
    try {
      const out = join(work, 'out-missing')
      const r = await runCli(['fetch', ...nodeArgs(), '--policy', policyFile, '--repo', net.repoId, '--commit', commit, '--out', out])
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(new RegExp(`FAILED: sample@[0-9a-f]{12}: no node served "blobs/sha256/${manifest}" \\(sha256 ${manifest}, \\d+ bytes\\) with the right content .*nothing was written to `))
      expect(existsSync(out)).toBe(false)
      expect(readdirSync(work).filter(n => n.includes('quorate-fetch'))).toEqual([])
      // An empty directory given as DIR stays empty.
      execFileSync('mkdir', [out])
      expect((await runCli(['fetch', ...nodeArgs(), '--policy', policyFile, '--repo', net.repoId, '--commit', commit, '--out', out])).code).toBe(2)
      expect(readdirSync(out)).toEqual([])
    } finally {
      for (const p of proxies) p.hide.clear()
    }
  })

  it('a fetch stopped mid-download (SIGTERM) leaves neither DIR nor its staging directory', async () => {
    for (const p of proxies) p.stall = true
    try {
      const out = join(work, 'out-stopped')
      const child = spawn(process.execPath, [CLI, 'fetch', ...nodeArgs(), '--policy', policyFile, '--repo', net.repoId, '--commit', commit, '--out', out], { stdio: 'ignore' })
      const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
      await waitFor(() => readdirSync(work).some(n => n.startsWith('.out-stopped.quorate-fetch-')), { timeoutMs: 30_000, what: 'the staging directory' })
      child.kill('SIGTERM')
      expect(await exited).toBe(143)
      expect(existsSync(out)).toBe(false)
      expect(readdirSync(work).filter(n => n.includes('quorate-fetch'))).toEqual([])
    } finally {
      for (const p of proxies) p.stall = false
    }
  })

  it('--ref picks the latest trusted commit; a non-empty DIR is refused before anything is fetched', async () => {
    const out = join(work, 'out-ref')
    const r = await runCli(['fetch', ...nodeArgs(), '--policy', policyFile, '--repo', net.repoId, '--ref', 'refs/heads/main', '--out', out, '--json'])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout).commit).toBe(commit)
    const again = await runCli(['fetch', ...nodeArgs(), '--policy', policyFile, '--repo', net.repoId, '--commit', commit, '--out', out])
    expect(again.code).toBe(2)
    expect(again.stderr).toMatch(/exists and is not an empty directory/)
  })

  it('bundle --format intoto-jsonl from the nodes re-verifies offline and yields a signed PASSED summary for the fetched digest', async () => {
    const jsonl = join(work, 'sample.intoto.jsonl')
    const b = await runCli(['bundle', ...nodeArgs(), '--repo', net.repoId, '--commit', commit, '--format', 'intoto-jsonl', '--out', jsonl])
    expect(b.code).toBe(0)
    const lines = readFileSync(jsonl, 'utf8').trimEnd().split('\n')
    expect(lines.length).toBeGreaterThanOrEqual(3)
    for (const l of lines) expect(JSON.parse(l).payloadType).toBe('application/vnd.in-toto+json')
    expect((await runCli(['key', 'generate', '--out', join(work, 'pipeline-key.json')])).code).toBe(0)
    const v = await runCli(['verify', '--bundle', jsonl, '--policy', policyFile, '--ref', 'refs/heads/main', '--json', '--vsa-key', join(work, 'pipeline-key.json'), '--vsa-out', join(work, 'sample.vsa.json')])
    expect(v.code).toBe(0)
    const narSha256 = JSON.parse(v.stdout).narSha256 as string
    const vsa = JSON.parse(Buffer.from(JSON.parse(readFileSync(join(work, 'sample.vsa.json'), 'utf8')).payload, 'base64').toString('utf8'))
    expect(vsa.predicate.verificationResult).toBe('PASSED')
    expect(vsa.subject[0]).toEqual({ name: `${net.repoId}@${commit}`, digest: { narSha256 } })
    expect(vsa.subject.some((s: { mediaType?: string }) => s.mediaType === 'application/vnd.oci.image.manifest.v1+json')).toBe(true)
  })

  it('a real node\'s provenance names the repository URL, its tools and where its build log is served', async () => {
    const node = net.nodes[0]
    const body = await (await fetch(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`)).json() as { envelopes: Array<{ payload: string, signatures: Array<{ keyid: string }> }> }
    const own = body.envelopes.map(e => JSON.parse(Buffer.from(e.payload, 'base64').toString('utf8'))).find(st => st.predicateType === 'https://slsa.dev/provenance/v1' && st.predicate.runDetails.builder.id.includes(node.name))
    expect(own).toBeDefined()
    expect(own.predicate.buildDefinition.resolvedDependencies).toEqual([{ uri: `git+file://${repoDir}@refs/heads/main`, digest: { gitCommit: commit } }])
    const deps = own.predicate.runDetails.builder.builderDependencies as Array<{ name: string, uri: string, annotations: { version: string } }>
    expect(deps.map(d => d.name)).toContain('git')
    expect(deps.find(d => d.name === 'git')?.annotations.version).toMatch(/^git version /)
    expect(own.predicate.buildDefinition.internalParameters.tools.git).toBe(deps.find(d => d.name === 'git')?.annotations.version)
    const logEntry = own.predicate.runDetails.byproducts.find((b: { name: string }) => b.name === 'build-log') as { uri: string, digest: { sha256: string } }
    expect(logEntry.uri).toBe(`${node.url}/v1/blobs/${logEntry.digest.sha256}`)
    const served = Buffer.from(await (await fetch(logEntry.uri)).arrayBuffer())
    expect(createHash('sha256').update(served).digest('hex')).toBe(logEntry.digest.sha256)
    expect(served.toString('utf8')).toMatch(/quorate: build phase/)
  })

  it('the same real envelope verifies with openssl pkeyutl -rawin from the node\'s PEM key (key show --pem --config)', async () => {
    const node = net.nodes[0] as DevNode & { config: string }
    const pemFile = join(work, 'alpha.pem')
    const shown = await runCli(['key', 'show', '--pem', '--config', node.config])
    expect(shown.code).toBe(0)
    writeFileSync(pemFile, shown.stdout)
    const body = await (await fetch(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`)).json() as { envelopes: Array<{ payloadType: string, payload: string, signatures: Array<{ keyid: string, sig: string }> }> }
    const keyid = (JSON.parse((await runCli(['key', 'show', '--json', '--config', node.config])).stdout) as { keyid: string }).keyid
    const mine = body.envelopes.filter(e => e.signatures[0].keyid === keyid)
    expect(mine.length).toBeGreaterThan(0)
    for (const [i, e] of mine.entries()) {
      const payload = Buffer.from(e.payload, 'base64')
      writeFileSync(join(work, `pae-${i}.bin`), Buffer.concat([Buffer.from(`DSSEv1 ${e.payloadType.length} ${e.payloadType} ${payload.length} `), payload]))
      writeFileSync(join(work, `sig-${i}.bin`), Buffer.from(e.signatures[0].sig, 'base64'))
      const out = execFileSync('openssl', ['pkeyutl', '-verify', '-rawin', '-pubin', '-inkey', pemFile, '-sigfile', join(work, `sig-${i}.bin`), '-in', join(work, `pae-${i}.bin`)], { encoding: 'utf8' })
      expect(out).toMatch(/Signature Verified Successfully/)
    }
  })

  it('--oci writes an image layout that skopeo pushes to a registry and pulls back with the same digest', async () => {
    const layout = join(work, 'oci')
    const r = await runCli(['fetch', ...nodeArgs(), '--policy', policyFile, '--repo', net.repoId, '--commit', commit, '--oci', layout])
    expect(r.code).toBe(0)
    const ref = r.stdout.trim()
    expect(ref).toMatch(/^sample:fetched@sha256:[0-9a-f]{64}$/)
    const digest = ref.slice(ref.indexOf('@') + 1)
    registry = await startRegistry()
    const skopeoPolicy = join(work, 'skopeo-policy.json')
    writeFileSync(skopeoPolicy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }))
    const target = `docker://${registry.host}/sample:fetched`
    execFileSync('skopeo', ['--policy', skopeoPolicy, 'copy', '--quiet', '--dest-tls-verify=false', '--preserve-digests', `oci:${layout}:sample:fetched`, target])
    const inspected = JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', target], { encoding: 'utf8' })) as { Digest: string }
    expect(inspected.Digest).toBe(digest)
    const back = join(work, 'oci-back')
    execFileSync('skopeo', ['--policy', skopeoPolicy, 'copy', '--quiet', '--src-tls-verify=false', '--preserve-digests', `${target.replace(':fetched', '')}@${digest}`, `oci:${back}:pulled`])
    const index = JSON.parse(readFileSync(join(back, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
    expect(index.manifests.map(m => m.digest)).toEqual([digest])
    expect(r.stderr).toMatch(/PASSED: .*narSha256 [0-9a-f]{64} verified/)
  })
})
