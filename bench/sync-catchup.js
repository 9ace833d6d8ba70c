// How long a fresh node takes to catch up N attestations by the sync protocol, next to the
// time to verify them alone. Real Ed25519 DSSE envelopes (core's signStatement), a real LevelDB
// Store on each side, and the node's validate path (core's checkEnvelope, then store.putEnvelope),
// two real libp2p nodes on 127.0.0.1 in this process.
//   node bench/sync-catchup.js              # 10k and 100k
//   BENCH_SIZES=2000,10000 node bench/sync-catchup.js
import '../packages/network/dist/polyfills.js'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { checkEnvelope, keyPairFromSeed, makeProvenanceStatement, makeRefObservationStatement, parsePolicy, signStatement } from '@quorate/core'
import { Store } from '@quorate/store'
import { createPeerKey, startNetwork } from '@quorate/network'

const SIZES = (process.env.BENCH_SIZES ?? '10000,100000').split(',').map(Number)
const KEYS = Number(process.env.BENCH_KEYS ?? 20)
const REPO = 'bench'
const RECIPE = { build: ['sh', 'build.sh'], output: 'dist', outputKind: 'dir' }

const keys = Array.from({ length: KEYS }, (_, i) => keyPairFromSeed(new Uint8Array(32).fill(i + 1)))
const policy = parsePolicy({
  version: 1,
  builders: keys.map((k, i) => ({ name: `b${i}`, org: `org${i}`, keys: [{ publicKey: k.publicKeyHex }] })),
  repositories: [{ id: REPO, url: 'https://git.example/bench.git', branches: ['main'], recipe: RECIPE }],
  quorum: {}
}, 'bench-policy')

const hex = (n, len = 40) => n.toString(16).padStart(len, '0')
const rate = (n, ms) => `${Math.round(n / (ms / 1000)).toLocaleString('en')}/s`
const secs = (ms) => `${(ms / 1000).toFixed(2)} s`

/** N envelopes over KEYS logs: per key, a ref observation and a build attestation per commit, seq ascending, prev linked. */
function makeEnvelopes (n) {
  const perKey = Math.ceil(n / KEYS)
  const out = []
  for (const [k, key] of keys.entries()) {
    let prev = null
    for (let seq = 0; seq < perKey && out.length < n; seq++) {
      const commit = hex(Math.floor(seq / 2) + 1)
      const log = { seq, prev }
      const statement = seq % 2 === 0
        ? makeRefObservationStatement({ repoId: REPO, ref: 'refs/heads/main', commit, builderId: `https://quorate.dev/builders/org${k}/b${k}`, observedOn: '2026-01-01T00:00:00Z', log })
        : makeProvenanceStatement({
          repoId: REPO, ref: 'refs/heads/main', commit, recipe: RECIPE, narSha256: hex(seq, 64), fileListSha256: hex(seq + 1, 64),
          topLevelFiles: [{ name: 'app.js', sha256: hex(seq + 2, 64) }], logSha256: hex(seq + 3, 64),
          fingerprint: { os: 'Debian GNU/Linux 12', kernel: '6.1.0', cpu: 'bench', sandbox: 'bwrap', tools: { sh: 'dash 0.5.12' } },
          builderId: `https://quorate.dev/builders/org${k}/b${k}`, invocationId: `inv-${k}-${seq}`, startedOn: '2026-01-01T00:00:00Z', finishedOn: '2026-01-01T00:01:00Z', log
        })
      const signed = signStatement(statement, key)
      out.push(signed.bytes)
      prev = signed.id
    }
  }
  return out
}

/** The node's validate: checkEnvelope against the policy, then the store (fork detection), like packages/node. */
function nodeValidate (store, counter) {
  return async (msg) => {
    const check = checkEnvelope(msg.data, policy, { repoId: msg.repoId })
    if (check.verdict !== 'accept') return check.verdict
    const out = await store.putEnvelope(check.verified, msg.data)
    if (out.status === 'duplicate') return 'ignore'
    counter.accepted++
    return 'accept'
  }
}

const syncSource = (store) => ({ heads: async () => await store.logHeads(), envelopesAfter: (r, k, s) => store.envelopesAfter(r, k, s) })

async function bench (n, all) {
  const envelopes = all.slice(0, n)
  const bytes = envelopes.reduce((s, e) => s + e.byteLength, 0)
  const dir = mkdtempSync(join(tmpdir(), 'quorate-bench-'))
  const result = { n, avgBytes: Math.round(bytes / n) }
  try {
    // 1. verify only
    let t = performance.now()
    for (const e of envelopes) if (checkEnvelope(e, policy, { repoId: REPO }).verdict !== 'accept') throw new Error('bench envelope did not verify')
    result.verifyMs = performance.now() - t

    // 2. verify + store, no network (what the receiver must do at least)
    const local = await Store.open(join(dir, 'local'))
    const localCounter = { accepted: 0 }
    const localValidate = nodeValidate(local, localCounter)
    t = performance.now()
    for (const e of envelopes) await localValidate({ repoId: REPO, data: e, from: 'bench', via: 'sync' })
    result.verifyStoreMs = performance.now() - t
    await local.close()

    // 3. the source node's store (verified and stored the same way; not timed as catch-up)
    const src = await Store.open(join(dir, 'src'))
    const srcValidate = nodeValidate(src, { accepted: 0 })
    for (const e of envelopes) await srcValidate({ repoId: REPO, data: e, from: 'bench', via: 'sync' })
    const dst = await Store.open(join(dir, 'dst'))
    const counter = { accepted: 0 }
    const common = { listen: ['/ip4/127.0.0.1/tcp/0'], loopbackNetwork: true, repoIds: [REPO], syncIntervalMs: 0, syncTimeoutMs: 3_600_000 }
    const a = await startNetwork({ ...common, peerKey: await createPeerKey(), bootstrap: [], validate: nodeValidate(src, { accepted: 0 }), sync: syncSource(src) })
    // 4. a fresh node starts with a bootstrap entry for the source: time until it holds all N
    t = performance.now()
    const b = await startNetwork({ ...common, peerKey: await createPeerKey(), bootstrap: [a.multiaddrs()[0]], validate: nodeValidate(dst, counter), sync: syncSource(dst) })
    const started = performance.now() - t
    while (counter.accepted < n) {
      if (performance.now() - t > 3_600_000) throw new Error(`catch-up stalled at ${counter.accepted}/${n}`)
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    result.catchUpMs = performance.now() - t
    result.startMs = started
    result.rounds = b.stats().syncRounds + (b.stats().syncFailures > 0 ? ` (+${b.stats().syncFailures} failed)` : '')
    await b.stop()
    await a.stop()
    await src.close()
    await dst.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  return result
}

const max = Math.max(...SIZES)
// Signing is the slowest part of setting up (noble Ed25519): keep the envelopes between runs.
const cacheFile = join(tmpdir(), `quorate-bench-envelopes-v1-${KEYS}-${max}.json`)
let all
if (existsSync(cacheFile)) {
  all = JSON.parse(readFileSync(cacheFile, 'utf8')).map(b => new Uint8Array(Buffer.from(b, 'base64')))
  console.log(`${all.length.toLocaleString('en')} signed envelopes read from ${cacheFile}`)
} else {
  console.log(`signing ${max.toLocaleString('en')} envelopes (${KEYS} keys, ref observations and build attestations alternating)…`)
  const t = performance.now()
  all = makeEnvelopes(max)
  const signMs = performance.now() - t
  console.log(`signed in ${secs(signMs)} (${rate(max, signMs)}; noble Ed25519, canonical JSON); kept in ${cacheFile}`)
  writeFileSync(cacheFile, JSON.stringify(all.map(b => Buffer.from(b).toString('base64'))))
}
for (const n of SIZES) {
  globalThis.gc?.()
  const r = await bench(n, all)
  console.log(`\n${n.toLocaleString('en')} attestations, ${r.avgBytes} bytes on average:`)
  console.log(`  verify only (checkEnvelope, node:crypto Ed25519): ${secs(r.verifyMs)}  ${rate(n, r.verifyMs)}`)
  console.log(`  verify + LevelDB putEnvelope, no network:        ${secs(r.verifyStoreMs)}  ${rate(n, r.verifyStoreMs)}`)
  console.log(`  fresh node catching up by sync (from start):     ${secs(r.catchUpMs)}  ${rate(n, r.catchUpMs)}  (libp2p start ${secs(r.startMs)}, rounds ${r.rounds})`)
  console.log(`  catch-up / verify-only: ${(r.catchUpMs / r.verifyMs).toFixed(2)}x; catch-up / verify+store: ${(r.catchUpMs / r.verifyStoreMs).toFixed(2)}x`)
}
