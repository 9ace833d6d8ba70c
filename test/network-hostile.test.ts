// Hostile peers against real node processes: libp2p peers in the test process gossip forged,
// unknown-key, oversized, malformed, replayed and invented envelopes and a flood, and speak
// broken sync; the honest network must keep its decisions, keep delivering honest
// attestations, and hang up on (ban) the peers that forge.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Libp2p, Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { keyPairFromSeed, makeProvenanceStatement, makeRefObservationStatement, signStatement, type BuilderKeyPair, type Envelope } from '@quorate/core'
import { startNetwork, createPeerKey, SYNC_PROTOCOL, type Network } from '@quorate/network'
import { createRawPeer } from '../packages/network/test/helpers.js'
// @ts-expect-error plain JS helper shared with the demo
import { createSampleRepo, addCommit, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, sleep } from '../scripts/devnet.js'

interface DevNode { name: string, org: string, url: string, dir: string, member: { multiaddr: string, keyid: string }, child?: { exitCode: number | null } }

const RECIPE = { build: ['sh', '-c', 'mkdir -p out && cat VERSION > out/version && ls src > out/files'], output: 'out', outputKind: 'dir', timeoutSeconds: 60 }
const enc = new TextEncoder()

let work: string
let repoDir: string
let net: { nodes: DevNode[], policyFile: string, repoId: string }
let first: string
let firstDigest: string
const attackers: Network[] = []
const rawPeers: Libp2p[] = []
const byName = (n: string): DevNode => net.nodes.find(x => x.name === n)!

async function decision (node: DevNode, commit: string): Promise<any> {
  return await getJson(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`)
}
async function status (node: DevNode): Promise<any> { return await getJson(`${node.url}/v1/status`) }
async function bannedTotal (node: DevNode): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text()
  const m = /^quorate_peers_banned_total(?:\{\})? (\d+)/m.exec(text)
  return m === null ? 0 : Number(m[1])
}
async function commitsKnown (node: DevNode): Promise<string[]> {
  return (await getJson(`${node.url}/v1/repos/${net.repoId}/commits`)).commits.map((c: { commit: string }) => c.commit)
}

/** A malicious gossip peer: accepts anything, ignores the size limit honest nodes keep. */
async function gossipAttacker (to: DevNode): Promise<Network> {
  const attacker = await startNetwork({
    peerKey: await createPeerKey(),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: [to.member.multiaddr],
    loopbackNetwork: true,
    repoIds: [net.repoId],
    maxMessageBytes: 1_000_000,
    validate: async () => 'accept'
  })
  attackers.push(attacker)
  expect(await attacker.waitForTopicPeers(net.repoId, 1, 20_000)).toBe(true)
  return attacker
}

/** A bare libp2p peer (no Quorate code) to speak broken sync; stopped after the test. */
async function rawPeer (): Promise<Libp2p> {
  const node = await createRawPeer()
  rawPeers.push(node)
  return node
}

/** varint length prefix + payload (the sync protocol's frames). */
function frame (payload: Uint8Array): Uint8Array {
  const header: number[] = []
  let n = payload.byteLength
  do { let b = n & 0x7f; n = Math.floor(n / 128); if (n > 0) b |= 0x80; header.push(b) } while (n > 0)
  return Buffer.concat([Uint8Array.from(header), payload])
}

async function closed (stream: Stream, timeoutMs: number): Promise<void> {
  if (stream.status === 'closed' || stream.status === 'aborted' || stream.status === 'reset') return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs)
    stream.addEventListener('close', () => { clearTimeout(timer); resolve() }, { once: true })
  })
}

const mallory = keyPairFromSeed(new Uint8Array(32).fill(77))
let inventedCounter = 0
/** An attestation of a commit that does not exist, signed by `key` (a key not in the policy). */
function invented (key: BuilderKeyPair): { bytes: Uint8Array, envelope: Envelope, commit: string } {
  const commit = (inventedCounter++).toString(16).padStart(40, 'c')
  const s = signStatement(makeRefObservationStatement({ repoId: net.repoId, ref: 'refs/heads/main', commit, builderId: 'https://quorate.dev/builders/evil/mallory', observedOn: '2026-01-01T00:00:00Z', log: { seq: 0, prev: null } }), key)
  return { bytes: s.bytes, envelope: s.envelope, commit }
}
/** A build attestation for `commit` that claims `keyid` (a real builder's) but is signed by mallory. */
function forged (keyid: string, commit: string, i: number): Uint8Array {
  const s = signStatement(makeProvenanceStatement({
    repoId: net.repoId, ref: 'refs/heads/main', commit, recipe: { build: RECIPE.build, output: RECIPE.output, outputKind: 'dir' },
    narSha256: 'd'.repeat(64), fileListSha256: 'd'.repeat(64), topLevelFiles: [], logSha256: 'd'.repeat(64), fingerprint: { i },
    builderId: 'https://quorate.dev/builders/evil/mallory', invocationId: `x${i}`, startedOn: '', finishedOn: '', log: { seq: 100 + i, prev: null }
  }), mallory)
  return enc.encode(JSON.stringify({ ...s.envelope, signatures: [{ keyid, sig: s.envelope.signatures[0]!.sig }] }))
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'quorate-hostile-'))
  repoDir = join(work, 'repo')
  first = createSampleRepo(repoDir)
  net = await initNetwork({
    dir: join(work, 'nodes'),
    repoUrl: repoDir,
    recipe: RECIPE,
    sandbox: 'none',
    pollSeconds: 1,
    builders: [{ name: 'alpha', org: 'alpha' }, { name: 'beta', org: 'beta' }, { name: 'gamma', org: 'gamma' }]
  })
  await Promise.all(net.nodes.map(async n => await startNodeProcess(n, {})))
  for (const n of net.nodes) {
    const d = await waitFor(async () => {
      const r = await decision(n, first)
      return r.decision.status === 'trusted' && r.decision.supporters.length === 3 ? r : undefined
    }, { timeoutMs: 60_000, what: `${n.name} to trust the first commit` })
    firstDigest = d.decision.trusted.narSha256
  }
}, 120_000)

afterAll(async () => {
  await Promise.allSettled(attackers.map(async a => { await a.stop() }))
  await Promise.allSettled(rawPeers.map(async p => { await p.stop() }))
  if (net !== undefined) await Promise.all(net.nodes.map(async n => await stopNodeProcess(n)))
  rmSync(work, { recursive: true, force: true })
})

describe('hostile peers against a 3-node network', () => {
  it('unknown keys, invented commits and exact replays are ignored without punishing the relay; nothing is stored', async () => {
    const beta = byName('beta')
    const relay = await gossipAttacker(beta)
    const honest = (await decision(byName('alpha'), first)).envelopes as Envelope[]
    const before = await status(beta)
    const inventedCommits: string[] = []
    for (let i = 0; i < 20; i++) {
      const inv = invented(mallory)
      inventedCommits.push(inv.commit)
      await relay.publish(net.repoId, inv.bytes)
    }
    for (const e of honest) await relay.publish(net.repoId, enc.encode(JSON.stringify(e))) // exact replays
    // every invented envelope validated (and ignored), then two gossip heartbeats: a graylist ban happens at a heartbeat
    await waitFor(async () => (await status(beta)).stats.received.ignore >= before.stats.received.ignore + 20, { timeoutMs: 15_000, what: 'beta to validate them' })
    const beats = (await status(beta)).stats.network.gossipHeartbeats
    await waitFor(async () => (await status(beta)).stats.network.gossipHeartbeats >= beats + 2, { timeoutMs: 10_000, what: 'two gossip heartbeats on beta' })
    const after = await status(beta)
    expect(after.stats.received.reject).toBe(before.stats.received.reject) // nothing punishable
    expect(after.stats.received.ignore - before.stats.received.ignore).toBeGreaterThanOrEqual(20)
    expect(after.peers).toContain(relay.peerId) // an honest relay may run a newer policy: not banned
    for (const n of net.nodes) {
      const known = await commitsKnown(n)
      expect(inventedCommits.some(c => known.includes(c))).toBe(false)
      const d = await decision(n, first)
      expect(d.decision.trusted.narSha256).toBe(firstDigest)
      expect(d.equivocationProofs).toHaveLength(0) // a replay is not a second envelope
    }
  })

  it('forged signatures, malformed and oversized messages are rejected and the sender is banned', async () => {
    const gamma = byName('gamma')
    const forger = await gossipAttacker(gamma)
    const bannedBefore = await bannedTotal(gamma)
    const alphaKeyid = byName('alpha').member.keyid
    const inventedCommit = 'f'.repeat(40)
    for (let i = 0; i < 6; i++) {
      await forger.publish(net.repoId, forged(alphaKeyid, i % 2 === 0 ? first : inventedCommit, i)).catch(() => {})
      await forger.publish(net.repoId, enc.encode(`{"payloadType":"junk ${i}"`)).catch(() => {})
      await forger.publish(net.repoId, new Uint8Array(80_000 + i)).catch(() => {})
    }
    await waitFor(async () => await bannedTotal(gamma) > bannedBefore, { timeoutMs: 15_000, what: 'gamma to ban the forger' })
    await waitFor(async () => !(await status(gamma)).peers.includes(forger.peerId), { timeoutMs: 10_000, what: 'gamma to hang up on the forger' })
    // kept out: a new connection is closed by gamma's connection gater
    const gammaId = (await status(gamma)).peerId
    await forger.dial(gamma.member.multiaddr).catch(() => {})
    await waitFor(async () => !forger.connectedPeers().includes(gammaId), { timeoutMs: 10_000, what: 'gamma to close the forger\'s new connection' })
    expect((await status(gamma)).peers).not.toContain(forger.peerId)
    expect(forger.topicPeers(net.repoId)).not.toContain((await status(gamma)).peerId)
    for (const n of net.nodes) {
      expect((await commitsKnown(n)).includes(inventedCommit)).toBe(false)
      const d = await decision(n, first)
      expect(d.decision.trusted.narSha256).toBe(firstDigest)
      expect(d.decision.results.some((r: { narSha256: string }) => r.narSha256 === 'd'.repeat(64))).toBe(false)
    }
  })

  it('absorbs a flood while an honest attestation of a new commit still reaches every node', async () => {
    const beta = byName('beta')
    const flooder = await gossipAttacker(beta) // unknown-key envelopes: the kind a node may not punish
    const junker = await gossipAttacker(beta) // malformed junk: punished, banned within a heartbeat
    const before = await status(beta)
    const bannedBefore = await bannedTotal(beta)
    let sent = 0
    let junkSent = 0
    let stop = false
    const t0 = Date.now()
    // 20 signed envelopes of invented commits, made distinct by JSON whitespace (another gossip
    // message id, the same envelope): costs the attacker nothing to vary, the node a parse each
    const bases = Array.from({ length: 20 }, () => new TextDecoder().decode(invented(mallory).bytes))
    const floodMessage = (i: number): Uint8Array => enc.encode('{' + ' '.repeat(1 + Math.floor(i / bases.length)) + bases[i % bases.length]!.slice(1))
    const flood = (async () => {
      while (!stop || sent < 2000) {
        await flooder.publish(net.repoId, floodMessage(sent)).catch(() => {})
        sent++
        if (sent % 50 === 0) await sleep(0) // let the test's HTTP polling run
      }
    })()
    const junk = (async () => {
      while (!stop || junkSent < 2000) {
        await junker.publish(net.repoId, enc.encode(`{"junk":${junkSent},"pad":"${'x'.repeat(200)}"}`)).catch(() => {})
        junkSent++
        if (junkSent % 50 === 0) await sleep(0)
      }
    })()
    await sleep(500)
    const pushedAt = Date.now()
    const next = addCommit(repoDir, 'src/during-flood.js', 'export const flood = true\n', 'pushed during a flood')
    const trustedAfter: Record<string, number> = {}
    try {
      await Promise.all(net.nodes.map(async n => {
        await waitFor(async () => (await decision(n, next)).decision.status === 'trusted', { timeoutMs: 60_000, intervalMs: 200, what: `${n.name} to trust the commit pushed during the flood` })
        trustedAfter[n.name] = Date.now() - pushedAt
      }))
    } finally {
      stop = true
      await Promise.all([flood, junk])
    }
    const floodSeconds = (Date.now() - t0) / 1000
    const after = await status(beta)
    const d = (k: string): number => after.stats.network[k] - before.stats.network[k]
    const validatedIgnored = after.stats.received.ignore - before.stats.received.ignore
    const rateLimited = d('gossipIgnored') - validatedIgnored
    console.log(`[flood] attackers sent ${sent} unknown-key envelopes and ${junkSent} junk messages in ${floodSeconds.toFixed(1)} s; ` +
      `beta took in ${d('gossipReceived')} (${(d('gossipReceived') / floodSeconds).toFixed(0)}/s): ${validatedIgnored} validated and ignored, ` +
      `${rateLimited} ignored by the per-peer rate limit, ${d('gossipRejected')} rejected; banned: junk sender ${!after.peers.includes(junker.peerId)}, flooder ${!after.peers.includes(flooder.peerId)}; ` +
      `the honest commit was trusted on every node ${Math.max(...Object.values(trustedAfter))} ms after the push (${JSON.stringify(trustedAfter)})`)
    expect(Math.max(...Object.values(trustedAfter))).toBeLessThan(45_000)
    expect(sent).toBeGreaterThanOrEqual(2000)
    expect(await bannedTotal(beta)).toBeGreaterThan(bannedBefore) // the junk sender
    expect((await status(beta)).peers).not.toContain(junker.peerId)
    for (const n of net.nodes) expect((await decision(n, first)).decision.trusted.narSha256).toBe(firstDigest)
  }, 120_000)

  it('a raw peer speaking broken sync (oversized, malformed, forged envelopes without end) is cut off and banned', async () => {
    const alpha = byName('alpha')
    const ma = multiaddr(alpha.member.multiaddr)
    const bannedBefore = await bannedTotal(alpha)
    // 1. an oversized frame header, then a malformed JSON frame: 5 + 5 misbehaviour points
    const raw = await rawPeer()
    const s1 = await raw.dialProtocol(ma, SYNC_PROTOCOL)
    s1.send(Uint8Array.of(0x80, 0x80, 0x80, 0x01)) // a 2 MiB frame announced
    await closed(s1, 5000)
    const s2 = await raw.dialProtocol(ma, SYNC_PROTOCOL)
    s2.send(frame(enc.encode('{"type":"heads","heads":[')))
    await closed(s2, 5000)
    await waitFor(async () => await bannedTotal(alpha) > bannedBefore, { timeoutMs: 10_000, what: 'alpha to ban the raw peer' })
    await expect(raw.dialProtocol(ma, SYNC_PROTOCOL, { signal: AbortSignal.timeout(5000) })).rejects.toThrow()

    // 2. a stream that never ends: valid heads, then an endless run of forged envelopes
    const raw2 = await rawPeer()
    const s3 = await raw2.dialProtocol(ma, SYNC_PROTOCOL)
    s3.send(frame(enc.encode(JSON.stringify({ type: 'heads', repoIds: [net.repoId], heads: [] }))))
    let pushed = 0
    const alphaKeyid = alpha.member.keyid
    while (s3.status === 'open' && pushed < 5000) {
      const data = Buffer.from(forged(alphaKeyid, first, 1000 + pushed)).toString('base64')
      if (!s3.send(frame(enc.encode(JSON.stringify({ type: 'env', repoId: net.repoId, data }))))) await sleep(5)
      pushed++
      if (pushed % 5 === 0) await sleep(20)
    }
    await closed(s3, 5000)
    expect(s3.status).not.toBe('open')
    expect(pushed).toBeLessThan(200) // cut off after ten rejects, not at the round timeout
    await waitFor(async () => await bannedTotal(alpha) >= bannedBefore + 2, { timeoutMs: 10_000, what: 'alpha to ban the second raw peer' })
    const st = await status(alpha)
    expect(st.peers).not.toContain(raw.peerId.toString())
    expect(st.peers).not.toContain(raw2.peerId.toString())
    expect((await decision(alpha, first)).decision.trusted.narSha256).toBe(firstDigest)
    for (const n of net.nodes) expect(n.child?.exitCode).toBeNull()
  })
})
