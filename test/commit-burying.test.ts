// Issue 14 item 5: one member key must not bury real commits. A four-organization network
// (threshold 3) on real node processes; the member "delta" goes rogue: its node is stopped and
// its builder key signs 1,100 ref observations of invented commits, each continuing delta's own
// log (seq, prev, previous) so every one is valid, delivered by gossip from a raw network peer
// within the per-signer budget. The commit list, `latest` and `quorate latest` must still answer
// the real commits; the invented ones show up only as unverified claims.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { envelopeIdOf, makeRefObservationStatement, parseAttestation, parseEnvelope, signStatement, type Envelope } from '@quorate/core'
import { startNetwork, createPeerKey, type Network } from '@quorate/network'
import { loadBuilderKey } from '@quorate/node'
import { MemorySyncSource } from '../packages/network/test/helpers.js'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, addCommit, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli, sleep } from '../scripts/devnet.js'

interface DevNode { name: string, org: string, url: string, dir: string, member: { multiaddr: string, keyid: string } }

const RECIPE = { build: ['sh', '-c', 'mkdir -p out && cat VERSION > out/version && ls src > out/files'], output: 'out', outputKind: 'dir', timeoutSeconds: 60 }
const INVENTED = 1100
const MAIN = 'refs/heads/main'

let work: string
let repoDir: string
let net: { nodes: DevNode[], policyFile: string, repoId: string }
let attacker: Network | undefined
const running = new Set<DevNode>()

async function trustedEverywhere (commit: string, nodes: DevNode[], supporters: number): Promise<void> {
  for (const n of nodes) {
    await waitFor(async () => {
      const r = await getJson(`${n.url}/v1/repos/${net.repoId}/commits/${commit}`)
      return r.decision.status === 'trusted' && r.decision.supporters.length >= supporters ? true : undefined
    }, { timeoutMs: 90_000, what: `${n.name} to trust ${commit.slice(0, 8)}` })
  }
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'quorate-burying-'))
  repoDir = join(work, 'repo')
  createSampleRepo(repoDir)
  net = await initNetwork({
    dir: join(work, 'nodes'),
    repoUrl: repoDir,
    recipe: RECIPE,
    sandbox: 'none',
    pollSeconds: 1,
    threshold: 3,
    builders: [{ name: 'alpha', org: 'alpha' }, { name: 'beta', org: 'beta' }, { name: 'gamma', org: 'gamma' }, { name: 'delta', org: 'delta' }]
  })
  await Promise.all(net.nodes.map(async n => { await startNodeProcess(n, {}); running.add(n) }))
}, 120_000)

afterAll(async () => {
  await attacker?.stop().catch(() => {})
  await Promise.all([...running].map(async n => await stopNodeProcess(n)))
  rmSync(work, { recursive: true, force: true })
})

describe('a rogue member key floods ref observations of invented commits', () => {
  it('the real commits stay listed first, latest answers the real tip, the invented ones are only unverified claims', async () => {
    const [alpha, beta, gamma, delta] = net.nodes
    const honest = [alpha, beta, gamma]
    const real1 = addCommit(repoDir, 'src/one.js', 'export const one = 1\n', 'one')
    await trustedEverywhere(real1, net.nodes, 4)
    const real2 = addCommit(repoDir, 'src/two.js', 'export const two = 2\n', 'two')
    await trustedEverywhere(real2, net.nodes, 4)

    // delta goes rogue: its node stops, its key keeps signing, continuing its own log.
    const ownLog = await getJson(`${delta.url}/v1/logs/${net.repoId}/${delta.member.keyid}`)
    await stopNodeProcess(delta)
    running.delete(delta)
    const key = loadBuilderKey(join(delta.dir, 'builder-key.json'))
    expect(key.keyid).toBe(delta.member.keyid)
    const envs = ownLog.envelopes as Envelope[]
    const last = parseEnvelope(envs[envs.length - 1])
    let seq = parseAttestation(last.payloadBytes).log.seq
    let prev = envelopeIdOf(last.envelope.payloadType, last.payloadBytes)
    let previous: string | null = null
    for (const e of envs) {
      const a = parseAttestation(parseEnvelope(e).payloadBytes)
      if (a.kind === 'ref' && a.ref === MAIN) previous = a.commit
    }
    expect(previous).toBe(real2)
    // delta's whole log as a sync source: what gossip drops (validations in flight are bounded), sync delivers
    const source = new MemorySyncSource()
    for (const e of envs) {
      const p = parseEnvelope(e)
      source.add(net.repoId, delta.member.keyid, parseAttestation(p.payloadBytes).log.seq, new TextEncoder().encode(JSON.stringify(e)))
    }
    const invented: string[] = []
    const messages: Uint8Array[] = []
    for (let i = 0; i < INVENTED; i++) {
      const commit = randomBytes(20).toString('hex')
      seq++
      const s = signStatement(makeRefObservationStatement({
        repoId: net.repoId, ref: MAIN, commit, previous, fastForward: true, introduced: [commit], truncated: false,
        builderId: 'https://quorate.dev/builders/delta/delta', observedOn: new Date().toISOString(), log: { seq, prev }
      }), key)
      messages.push(s.bytes)
      source.add(net.repoId, delta.member.keyid, seq, s.bytes)
      invented.push(commit)
      prev = s.id
      previous = commit
    }

    // delivered by gossip from a bare network peer, paced under the per-signer budget (50/s, burst 500)
    attacker = await startNetwork({
      peerKey: await createPeerKey(),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [alpha.member.multiaddr, beta.member.multiaddr, gamma.member.multiaddr],
      loopbackNetwork: true,
      repoIds: [net.repoId],
      validate: async () => 'accept',
      sync: source,
      syncIntervalMs: 0
    })
    expect(await attacker.waitForTopicPeers(net.repoId, 3, 20_000)).toBe(true)
    for (const [i, m] of messages.entries()) {
      await attacker.publish(net.repoId, m)
      if (i >= 400) await sleep(25)
    }
    const deltaLogLength = envs.length + INVENTED
    let gossiped = 0
    for (const n of honest) {
      const peerId = (await getJson(`${n.url}/v1/status`)).peerId
      let first = true
      await waitFor(async () => {
        const log = await getJson(`${n.url}/v1/logs/${net.repoId}/${delta.member.keyid}`)
        if (first) { gossiped += log.envelopes.length - envs.length; first = false }
        if (log.envelopes.length >= deltaLogLength) return true
        await attacker!.syncWith(peerId).catch(() => {})
        return undefined
      }, { timeoutMs: 90_000, intervalMs: 1000, what: `${n.name} to store all of delta's ${INVENTED} invented observations` })
    }
    console.log(`invented observations: ${INVENTED} signed; the honest nodes held ${gossiped} of ${3 * INVENTED} by gossip before any sync round`)

    // a real push after the flood: the three honest organizations still make it trusted
    const real3 = addCommit(repoDir, 'src/three.js', 'export const three = 3\n', 'three')
    await trustedEverywhere(real3, honest, 3)

    const inventedSet = new Set(invented)
    for (const n of honest) {
      const list = await getJson(`${n.url}/v1/repos/${net.repoId}/commits`)
      const listed: string[] = list.commits.map((c: { commit: string }) => c.commit)
      expect(listed.slice(0, 3), `${n.name} lists the real commits first`).toEqual([real3, real2, real1])
      expect(listed.filter(c => inventedSet.has(c)), `${n.name} lists no invented commit as a commit`).toEqual([])
      expect(list.commits[0].status).toBe('trusted')
      // the invented ones are shown apart, with who claimed them, and bounded
      const claims = list.unverifiedClaims as Array<{ commit: string, claimedBy: Array<{ builder: string, org: string }>, refs: string[] }>
      expect(claims).toHaveLength(50)
      expect(list.unverifiedClaimants).toEqual([{ builder: 'delta', org: 'delta', commits: 200 }])
      for (const c of claims) {
        expect(inventedSet.has(c.commit)).toBe(true)
        expect(c.claimedBy).toEqual([{ builder: 'delta', org: 'delta' }])
        expect(c.refs).toEqual([MAIN])
      }
      expect(claims[0].commit).toBe(invented[INVENTED - 1])

      const latest = await getJson(`${n.url}/v1/repos/${net.repoId}/latest?ref=${encodeURIComponent(MAIN)}`)
      expect(latest.commit, `${n.name}'s latest`).toBe(real3)
    }

    const cli = await runCli(['latest', ...honest.flatMap(n => ['--node', n.url]), '--repo', net.repoId, '--ref', MAIN, '--policy', net.policyFile, '--json'])
    expect(cli.code, cli.stderr).toBe(0)
    expect(JSON.parse(cli.stdout).commit).toBe(real3)

    const status = await runCli(['status', '--node', alpha.url])
    expect(status.code, status.stderr).toBe(0)
    expect(status.stdout).toContain('unverified claims: 200 commits claimed by delta (delta): not observed by a quorum')
  }, 300_000)
})
