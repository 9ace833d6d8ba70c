// Catch-up across real node processes on 127.0.0.1: a node that was down while 20 commits were
// attested, a node that joins a network with a history, and a network split in two halves
// that attest while apart and then merge. Everything that arrives late arrives by the sync
// protocol (gossip only carries what is published while a peer is connected).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, addCommit, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, editConfig } from '../scripts/devnet.js'

interface DevNode { name: string, org: string, url: string, dir: string, config: string, member: { multiaddr: string, keyid: string }, child?: { exitCode: number | null } }

/** Small and fast: one file from the checkout. */
const RECIPE = { build: ['sh', '-c', 'mkdir -p out && cat VERSION > out/version && ls src > out/files'], output: 'out', outputKind: 'dir', timeoutSeconds: 60 }

let work: string
let repoDir: string
let net: { nodes: DevNode[], policyFile: string, repoId: string }
let first: string
const byName = (n: string): DevNode => net.nodes.find(x => x.name === n)!

interface CommitView { status: string, narSha256: string | null, envelopes: Set<string>, buildKeyids: Set<string> }

/** What one node knows about one commit: its decision and the envelopes it holds (keyid + payload hash). */
async function view (node: DevNode, commit: string): Promise<CommitView> {
  const r = await getJson(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`)
  const envelopes = new Set<string>()
  const buildKeyids = new Set<string>()
  for (const e of r.envelopes as Array<{ payload: string, signatures: Array<{ keyid: string }> }>) {
    const keyid = e.signatures[0]!.keyid
    envelopes.add(`${keyid}:${createHash('sha256').update(e.payload).digest('hex')}`)
    const statement = JSON.parse(Buffer.from(e.payload, 'base64').toString('utf8'))
    if (String(statement.predicateType).startsWith('https://slsa.dev/provenance/')) buildKeyids.add(keyid)
  }
  return { status: r.decision.status, narSha256: r.decision.trusted?.narSha256 ?? null, envelopes, buildKeyids }
}

const keyids = (names: string[]): string[] => names.map(n => byName(n).member.keyid)
const hasBuildsOf = (v: CommitView, names: string[]): boolean => keyids(names).every(k => v.buildKeyids.has(k))
const sameSet = (a: Set<string>, b: Set<string>): boolean => a.size === b.size && [...a].every(x => b.has(x))

/** Waits until every node in `nodes` holds build attestations of `builders` for every commit, with identical envelope sets and decisions. */
async function waitConverged (nodes: DevNode[], commits: string[], builders: string[], opts: { timeoutMs: number, status?: string, what: string }): Promise<Map<string, CommitView>> {
  let result = new Map<string, CommitView>()
  await waitFor(async () => {
    const out = new Map<string, CommitView>()
    for (const c of commits) {
      const views = await Promise.all(nodes.map(async n => await view(n, c)))
      const [v0] = views
      if (v0 === undefined || !hasBuildsOf(v0, builders)) return false
      if (opts.status !== undefined && v0.status !== opts.status) return false
      if (!views.every(v => sameSet(v.envelopes, v0.envelopes) && v.status === v0.status && v.narSha256 === v0.narSha256)) return false
      out.set(c, v0)
    }
    result = out
    return true
  }, { timeoutMs: opts.timeoutMs, intervalMs: 500, what: opts.what })
  return result
}

async function networkStats (node: DevNode): Promise<{ syncAccepted: number, syncRounds: number }> {
  return (await getJson(`${node.url}/v1/status`)).stats.network
}

function setBootstrap (node: DevNode, peers: DevNode[]): void {
  editConfig(node, (c: any) => { c.bootstrap = peers.map(p => p.member.multiaddr) })
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'quorate-catchup-'))
  repoDir = join(work, 'repo')
  first = createSampleRepo(repoDir)
  // Four organizations, threshold 3 (the smallest majority). delta is in the policy from the
  // start but only joins in the second test.
  net = await initNetwork({
    dir: join(work, 'nodes'),
    repoUrl: repoDir,
    recipe: RECIPE,
    sandbox: 'none',
    pollSeconds: 1,
    builders: [
      { name: 'alpha', org: 'alpha' },
      { name: 'beta', org: 'beta' },
      { name: 'gamma', org: 'gamma' },
      { name: 'delta', org: 'delta' }
    ]
  })
  // three builds at once: most of a build is git checkout, not CPU; incoming signatures verified
  // on a worker thread (verifyWorkers defaults to none on two cores): the pool in real nodes,
  // through sync catch-up, restarts and stops
  for (const n of net.nodes) editConfig(n, (c: any) => { c.concurrency = 3; c.verifyWorkers = 1 })
  await Promise.all(['alpha', 'beta', 'gamma'].map(async n => await startNodeProcess(byName(n), {})))
}, 60_000)

afterAll(async () => {
  if (net !== undefined) await Promise.all(net.nodes.map(async n => await stopNodeProcess(n)))
  rmSync(work, { recursive: true, force: true })
})

describe('catch-up by sync between real node processes', () => {
  const commits: string[] = []

  it('a node that was down while 20 commits were attested has all of them after a restart, with the same decisions', async () => {
    const up = ['alpha', 'beta'].map(byName)
    const gamma = byName('gamma')
    await waitConverged([...up, gamma], [first], ['alpha', 'beta', 'gamma'], { timeoutMs: 60_000, status: 'trusted', what: 'the first commit to be trusted' })

    await stopNodeProcess(gamma)
    for (let i = 0; i < 20; i++) commits.push(addCommit(repoDir, `src/c${i}.js`, `export const c${i} = ${i}\n`, `commit ${i}`))
    // alpha and beta attest all 20 while gamma is away: 2 of 3 organizations needed, so pending
    const t0 = Date.now()
    await waitConverged(up, commits, ['alpha', 'beta'], { timeoutMs: 120_000, status: 'pending', what: 'alpha and beta to attest the 20 commits' })
    const attestMs = Date.now() - t0

    const t1 = Date.now()
    await startNodeProcess(gamma, {})
    // gamma gets alpha's and beta's 40 build attestations by sync, builds the 20 itself (its
    // poller finds the moved ref), and its attestations reach the others: all trusted everywhere
    // first what sync alone brings: alpha's and beta's attestations of all 20 commits
    await waitFor(async () => {
      for (const c of commits) if (!hasBuildsOf(await view(gamma, c), ['alpha', 'beta'])) return false
      return true
    }, { timeoutMs: 60_000, intervalMs: 250, what: 'gamma to receive alpha\'s and beta\'s attestations' })
    const syncedMs = Date.now() - t1
    const views = await waitConverged([...up, gamma], commits, ['alpha', 'beta', 'gamma'], { timeoutMs: 120_000, status: 'trusted', what: 'gamma to catch up and the 20 commits to be trusted everywhere' })
    const catchUpMs = Date.now() - t1
    expect(new Set([...views.values()].map(v => v.narSha256)).size).toBe(20) // one distinct digest per commit
    const s = await networkStats(gamma)
    expect(s.syncAccepted).toBeGreaterThanOrEqual(40) // at least alpha's and beta's builds came by sync
    console.log(`[catch-up] 20 commits attested by 2 nodes in ${attestMs} ms; the restarted node held their 40 attestations ${syncedMs} ms after its start began and converged (own builds included) in ${catchUpMs} ms (synced ${s.syncAccepted} envelopes in ${s.syncRounds} rounds)`)
  }, 300_000)

  it('a node that joins a network with a history gets all of it', async () => {
    const delta = byName('delta')
    const all = [first, ...commits]
    const t0 = Date.now()
    await startNodeProcess(delta, {})
    // delta builds only the newest `backfill` (10) commits itself; the rest it knows by sync only
    const views = await waitConverged([byName('alpha'), delta], all, ['alpha', 'beta', 'gamma'], { timeoutMs: 90_000, status: 'trusted', what: 'delta to hold the whole history' })
    const joinMs = Date.now() - t0
    for (const c of all) expect((await view(byName('gamma'), c)).narSha256).toBe(views.get(c)?.narSha256)
    const s = await networkStats(delta)
    expect(s.syncAccepted).toBeGreaterThanOrEqual(all.length * 3)
    console.log(`[join] a new node received ${s.syncAccepted} envelopes of ${all.length} commits by sync; whole history held after ${joinMs} ms`)
  }, 120_000)

  it('a network split in two halves that attest apart converges when they reconnect', async () => {
    const [alpha, beta, gamma, delta] = ['alpha', 'beta', 'gamma', 'delta'].map(byName) as [DevNode, DevNode, DevNode, DevNode]
    // Split: restart everyone with bootstrap lists pointing only inside its half. (libp2p's peer
    // store is in memory, so a restarted node remembers no one else.)
    await Promise.all(net.nodes.map(async n => await stopNodeProcess(n)))
    setBootstrap(alpha, [beta]); setBootstrap(beta, [alpha])
    setBootstrap(gamma, [delta]); setBootstrap(delta, [gamma])
    await Promise.all(net.nodes.map(async n => await startNodeProcess(n, {})))
    const split = [addCommit(repoDir, 'src/split-a.js', 'export const a = 1\n', 'while split: a'), addCommit(repoDir, 'src/split-b.js', 'export const b = 2\n', 'while split: b')]
    // Each half attests both commits but hears only its own half: 2 of 3 organizations, pending.
    await waitConverged([alpha, beta], split, ['alpha', 'beta'], { timeoutMs: 60_000, status: 'pending', what: 'the alpha/beta half to attest' })
    await waitConverged([gamma, delta], split, ['gamma', 'delta'], { timeoutMs: 60_000, status: 'pending', what: 'the gamma/delta half to attest' })
    for (const c of split) {
      expect((await view(alpha, c)).buildKeyids.has(gamma.member.keyid)).toBe(false)
      expect((await view(gamma, c)).buildKeyids.has(alpha.member.keyid)).toBe(false)
    }
    const peers = (await getJson(`${alpha.url}/v1/status`)).peers as string[]
    expect(peers).not.toContain((await getJson(`${gamma.url}/healthz`)).peerId)

    // Heal: restart one node of a half with both halves in its bootstrap list.
    const t0 = Date.now()
    await stopNodeProcess(beta)
    setBootstrap(beta, [alpha, gamma])
    await startNodeProcess(beta, {})
    await waitConverged(net.nodes, split, ['alpha', 'beta', 'gamma', 'delta'], { timeoutMs: 60_000, status: 'trusted', what: 'the halves to converge' })
    console.log(`[split] two halves converged ${Date.now() - t0} ms after one node was restarted with a bootstrap entry in the other half`)
    for (const n of net.nodes) expect(n.child?.exitCode).toBeNull()
  }, 240_000)
})
