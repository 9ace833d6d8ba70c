// End to end: real node processes on 127.0.0.1 against a temp git repository, decisions
// over HTTP and through `quorate verify` exit codes, a dissenter, an organization whose two
// builders disagree, a lying HTTP node, and an attacker peer gossiping forged envelopes.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { keyPairFromSeed, makeProvenanceStatement, signStatement, parsePolicy, type Envelope } from '@quorate/core'
import { detectSandbox, hashOutput } from '@quorate/builder'
import { startNetwork, createPeerKey, type Network } from '@quorate/network'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, addCommit, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli, SAMPLE_RECIPE } from '../scripts/devnet.js'

interface DevNode { name: string, org: string, url: string, dir: string, member: { multiaddr: string, keyid: string, peerId: string }, child?: { exitCode: number | null } }

let work: string
let repoDir: string
let net: { nodes: DevNode[], policyFile: string, repoId: string }
let first: string
let honestDigest: string
const byName = (n: string): DevNode => net.nodes.find(x => x.name === n)!

async function decision (node: DevNode, commit: string): Promise<any> {
  return await getJson(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`)
}

/** What an honest builder gets: the sample build run by hand, outside Quorate, then `hashOutput`. */
async function localDigest (commit: string): Promise<string> {
  const dir = join(work, `local-${commit.slice(0, 8)}`)
  execFileSync('git', ['clone', '-q', repoDir, dir])
  execFileSync('git', ['checkout', '-q', '--detach', commit], { cwd: dir })
  const epoch = execFileSync('git', ['log', '-1', '--format=%ct', commit], { cwd: dir, encoding: 'utf8' }).trim()
  execFileSync('sh', ['-c', 'umask 022 && sh build.sh'], { cwd: dir, env: { PATH: '/usr/bin:/bin', SOURCE_DATE_EPOCH: epoch, TZ: 'UTC', LC_ALL: 'C.UTF-8' } })
  return (await hashOutput(join(dir, 'dist'))).narSha256
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'quorate-e2e-'))
  repoDir = join(work, 'repo')
  first = createSampleRepo(repoDir)
  const sandbox = (await detectSandbox()) ?? 'none'
  // Five organizations, threshold 3. delta's two builders disagree (one is compromised);
  // echo's only builder is compromised and dissents.
  net = await initNetwork({
    dir: join(work, 'nodes'),
    repoUrl: repoDir,
    sandbox,
    pollSeconds: 1,
    builders: [
      { name: 'alpha-1', org: 'alpha' },
      { name: 'beta-1', org: 'beta' },
      { name: 'gamma-1', org: 'gamma' },
      { name: 'delta-1', org: 'delta' },
      { name: 'delta-2', org: 'delta', tamper: true },
      { name: 'echo-1', org: 'echo', tamper: true }
    ]
  })
  await Promise.all(net.nodes.map(async n => await startNodeProcess(n, {})))
  honestDigest = await localDigest(first)
}, 120_000)

afterAll(async () => {
  if (net !== undefined) await Promise.all(net.nodes.map(async n => await stopNodeProcess(n)))
  rmSync(work, { recursive: true, force: true })
})

describe('a local Quorate network', () => {
  it('rebuilds the commit on every node and trusts the digest an honest local build gives', async () => {
    const d = await waitFor(async () => {
      const r = await decision(byName('alpha-1'), first)
      return r.decision.status === 'trusted' && r.decision.supporters.length + r.decision.dissenters.length === 6 ? r : undefined
    }, { timeoutMs: 90_000, what: 'a trusted decision with everyone heard' })
    expect(d.decision.trusted.narSha256).toBe(honestDigest)
    expect(d.decision.trusted.supportingOrgs).toEqual(['alpha', 'beta', 'gamma'])
    expect(d.decision.dissenters.map((x: any) => x.builder).sort()).toEqual(['delta-1', 'delta-2', 'echo-1'])
    expect(d.decision.conflictedOrgs.map((x: any) => x.org)).toEqual(['delta'])
    // The compromised builders agree with each other, but only echo's organization supports that result.
    const bad = d.decision.results.find((r: any) => r.narSha256 !== honestDigest)
    expect(bad.builders).toEqual(['delta-2', 'echo-1'])
    expect(bad.supportingOrgs).toEqual(['echo'])
    // Every node reaches the same decision.
    for (const n of net.nodes) {
      await waitFor(async () => (await decision(n, first)).decision.trusted?.narSha256 === honestDigest, { timeoutMs: 30_000, what: `${n.name} to trust the commit` })
    }
  })

  it('gates a deploy through quorate verify exit codes: 0 trusted, 1 wrong digest, 3 pending, 2 errors', async () => {
    const nodes = ['alpha-1', 'echo-1'].flatMap(n => ['--node', byName(n).url])
    const base = ['verify', ...nodes, '--policy', net.policyFile, '--repo', net.repoId]
    const ok = await runCli([...base, '--commit', first, '--json'])
    expect(ok.code).toBe(0)
    expect(ok.stderr).toMatch(/^PASSED: sample@.* is trusted/)
    const report = JSON.parse(ok.stdout)
    expect(report).toMatchObject({ status: 'trusted', narSha256: honestDigest, supportingOrgs: ['alpha', 'beta', 'gamma'] })
    expect((await runCli([...base, '--commit', first, '--digest', honestDigest])).code).toBe(0)
    const wrong = await runCli([...base, '--commit', first, '--digest', 'f'.repeat(64)])
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/^FAILED: .*not the --digest/)
    const pending = await runCli([...base, '--commit', '0'.repeat(40)])
    expect(pending.code).toBe(3)
    expect((await runCli(['verify', '--node', 'http://127.0.0.1:1', '--policy', net.policyFile, '--repo', net.repoId, '--commit', first])).code).toBe(2)
    const badPolicy = join(work, 'bad-policy.json')
    const doc = JSON.parse(readFileSync(net.policyFile, 'utf8'))
    doc.quorum.threshold = 1
    writeFileSync(badPolicy, JSON.stringify(doc))
    const bp = await runCli([...base, '--commit', first].map(a => a === net.policyFile ? badPolicy : a))
    expect(bp.code).toBe(2)
    expect(bp.stderr).toMatch(/bad-policy.json: quorum.threshold: 1 is not more than half/)
  })

  it('verify checks refs, artifacts, a pinned policy digest, waits, and works offline from a bundle', async () => {
    const nodes = ['alpha-1', 'gamma-1'].flatMap(n => ['--node', byName(n).url])
    const base = ['verify', ...nodes, '--policy', net.policyFile, '--repo', net.repoId, '--commit', first]
    // Every builder signed that it saw refs/heads/main at this commit.
    const ref = await runCli([...base, '--ref', 'refs/heads/main', '--json'])
    expect(ref.code).toBe(0)
    expect(JSON.parse(ref.stdout).refObservedBy).toEqual(['alpha', 'beta', 'delta', 'echo', 'gamma'])
    const otherRef = await runCli([...base, '--ref', 'refs/heads/release'])
    expect(otherRef.code).toBe(1)
    expect(otherRef.stderr).toMatch(/only 0 of the 3 organizations needed signed that refs\/heads\/release brought this commit/)
    // An artifact from an honest local build is in the trusted file list; a doctored one is not.
    const artifact = join(work, `local-${first.slice(0, 8)}`, 'dist', 'app.js')
    const art = await runCli([...base, '--artifact', artifact, '--json'])
    expect(art.code).toBe(0)
    expect(JSON.parse(art.stdout).artifact).toMatchObject({ found: true, entry: { path: 'app.js' } })
    const doctored = join(work, 'app.js')
    writeFileSync(doctored, readFileSync(artifact, 'utf8') + '\n/* injected */\n')
    const bad = await runCli([...base, '--artifact', doctored])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/is not in the trusted build output/)
    const pinned = await runCli([...base, '--policy-digest', 'a'.repeat(64)])
    expect(pinned.code).toBe(2)
    expect(pinned.stderr).toMatch(/not the pinned --policy-digest/)
    const t0 = Date.now()
    const waited = await runCli(['verify', ...nodes, '--policy', net.policyFile, '--repo', net.repoId, '--commit', '1'.repeat(40), '--wait', '--timeout', '2'])
    expect(waited.code).toBe(3)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000)
    expect(waited.stderr).toMatch(/gave up waiting after 2 s/)
    // A bundle exported from one node verifies offline; cut down below the threshold it proves nothing.
    const bundleFile = join(work, 'bundle.json')
    const exported = await runCli(['bundle', '--node', byName('beta-1').url, '--repo', net.repoId, '--commit', first, '--out', bundleFile])
    expect(exported.code).toBe(0)
    const offline = await runCli(['verify', '--bundle', bundleFile, '--policy', net.policyFile, '--json'])
    expect(offline.code).toBe(0)
    expect(JSON.parse(offline.stdout).narSha256).toBe(honestDigest)
    expect(offline.stderr).toMatch(/no other result can be trusted under this policy/)
    const bundle = JSON.parse(readFileSync(bundleFile, 'utf8'))
    bundle.envelopes = bundle.envelopes.filter((e: Envelope) => e.signatures[0].keyid === byName('alpha-1').member.keyid)
    writeFileSync(bundleFile, JSON.stringify(bundle))
    expect((await runCli(['verify', '--bundle', bundleFile, '--policy', net.policyFile])).code).toBe(3)
  })

  it('verify trusts signatures, not nodes: a lying node serving forged envelopes and a fake verdict changes nothing', async () => {
    const mallory = keyPairFromSeed(new Uint8Array(32).fill(66))
    const forged: Envelope[] = net.nodes.map(n => {
      const s = signStatement(makeProvenanceStatement({
        repoId: net.repoId, ref: 'refs/heads/main', commit: first, recipe: { build: SAMPLE_RECIPE.build, output: 'dist', outputKind: 'dir' },
        narSha256: 'e'.repeat(64), fileListSha256: 'e'.repeat(64), topLevelFiles: [], logSha256: 'e'.repeat(64), fingerprint: {},
        builderId: `https://quorate.dev/builders/x/${n.name}`, invocationId: 'x', startedOn: '', finishedOn: '', log: { seq: 0, prev: null }
      }), mallory).envelope
      return { ...s, signatures: [{ keyid: n.member.keyid, sig: s.signatures[0].sig }] } // claims each real builder's key
    })
    const server: Server = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json')
      // Forgeries in every real builder's name, and a made-up verdict.
      res.end(JSON.stringify({ decision: { status: 'trusted', trusted: { narSha256: 'e'.repeat(64) } }, envelopes: [...forged, ...forged], equivocationProofs: [] }))
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const liar = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    try {
      const alone = await runCli(['verify', '--node', liar, '--policy', net.policyFile, '--repo', net.repoId, '--commit', first, '--json'])
      expect(alone.code).toBe(3)
      const ignored = JSON.parse(alone.stdout).ignored as Array<{ reason: string }>
      // Every forged envelope is listed as ignored, each for its signature (an empty list would prove nothing).
      expect(ignored.length).toBeGreaterThan(0)
      expect(ignored.filter(i => !/bad signature/.test(i.reason))).toEqual([])
      // Next to an honest node the liar can neither forge nor hide the quorum.
      const both = await runCli(['verify', '--node', liar, '--node', byName('gamma-1').url, '--policy', net.policyFile, '--repo', net.repoId, '--commit', first, '--json'])
      expect(both.code).toBe(0)
      expect(JSON.parse(both.stdout).narSha256).toBe(honestDigest)
    } finally {
      server.close()
    }
  })

  it('an attacker peer gossiping forged, unknown-key and oversized envelopes changes no decision and stores nothing', async () => {
    const attacker: Network = await startNetwork({
      peerKey: await createPeerKey(),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [byName('beta-1').member.multiaddr],
      loopbackNetwork: true,
      repoIds: [net.repoId],
      maxMessageBytes: 1_000_000, // the attacker ignores the limit honest nodes keep
      validate: async () => 'accept'
    })
    try {
      expect(await attacker.waitForTopicPeers(net.repoId, 1, 20_000)).toBe(true)
      const mallory = keyPairFromSeed(new Uint8Array(32).fill(77))
      const stmt = makeProvenanceStatement({
        repoId: net.repoId, ref: 'refs/heads/main', commit: first, recipe: { build: SAMPLE_RECIPE.build, output: 'dist', outputKind: 'dir' },
        narSha256: 'd'.repeat(64), fileListSha256: 'd'.repeat(64), topLevelFiles: [], logSha256: 'd'.repeat(64), fingerprint: {},
        builderId: 'https://quorate.dev/builders/evil/mallory', invocationId: 'x', startedOn: '', finishedOn: '', log: { seq: 0, prev: null }
      })
      const unknown = signStatement(stmt, mallory)
      const betaKeyid = byName('beta-1').member.keyid
      const forgedEnv = { ...unknown.envelope, signatures: [{ keyid: betaKeyid, sig: unknown.envelope.signatures[0].sig }] }
      const before = await getJson(`${byName('beta-1').url}/v1/status`)
      for (let i = 0; i < 5; i++) {
        await attacker.publish(net.repoId, new TextEncoder().encode(JSON.stringify(forgedEnv)))
        await attacker.publish(net.repoId, unknown.bytes)
        await attacker.publish(net.repoId, new TextEncoder().encode(`{"junk":${i}}`))
        await attacker.publish(net.repoId, new Uint8Array(80_000 + i))
        // Different bytes each round (gossipsub drops exact repeats by message id).
        forgedEnv.payload = Buffer.from(JSON.stringify({ ...stmt, i })).toString('base64')
      }
      await waitFor(async () => {
        const s = await getJson(`${byName('beta-1').url}/v1/status`)
        return s.stats.received.reject + s.stats.received.ignore >= before.stats.received.reject + before.stats.received.ignore + 3
      }, { timeoutMs: 20_000, what: 'the forged envelopes to be refused' })
      // The forging peer loses its standing and is disconnected.
      const betaPeer = byName('beta-1').member.peerId
      await waitFor(() => !attacker.connectedPeers().includes(betaPeer), { timeoutMs: 30_000, what: 'beta to disconnect the forging peer' })
      for (const n of net.nodes) {
        const d = await decision(n, first)
        expect(d.decision.trusted.narSha256).toBe(honestDigest)
        expect(d.envelopes.some((e: Envelope) => e.signatures[0].keyid === mallory.keyid)).toBe(false)
        expect(d.envelopes.some((e: Envelope) => e.payload === forgedEnv.payload || e.payload === unknown.envelope.payload)).toBe(false)
        expect(d.decision.results.some((r: any) => r.narSha256 === 'd'.repeat(64))).toBe(false)
      }
    } finally {
      await attacker.stop()
    }
  })

  it('picks up a new commit on every node and trusts it', async () => {
    const next = addCommit(repoDir, 'src/more.js', 'export const more = 1\n', 'more')
    const expected = await localDigest(next)
    try {
      for (const n of net.nodes) {
        await waitFor(async () => (await decision(n, next)).decision.trusted?.narSha256 === expected, { timeoutMs: 60_000, what: `${n.name} to trust the new commit` })
      }
    } catch (err) {
      // Leave the evidence in the CI log: what each node said about the network and the commit.
      for (const n of net.nodes as Array<DevNode & { log?: string }>) {
        const lines = (n.log ?? '').split('\n').filter(l => /network|decision|build|publish|ban|error/i.test(l)).slice(-25)
        console.error(`--- ${n.name}\n${lines.join('\n')}`)
      }
      throw err
    }
    const verify = await runCli(['verify', '--node', byName('delta-1').url, '--policy', net.policyFile, '--repo', net.repoId, '--commit', next, '--digest', expected])
    expect(verify.code).toBe(0)
    // No process crashed along the way.
    for (const n of net.nodes) expect(n.child?.exitCode).toBeNull()
    // Parsing the policy the nodes use gives the same digest they report.
    const status = await getJson(`${byName('alpha-1').url}/v1/status`)
    expect(status.policyDigest).toBe(parsePolicy(JSON.parse(readFileSync(net.policyFile, 'utf8'))).digest)
  }, 180_000)
})
