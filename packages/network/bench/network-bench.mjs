// Measures gossip latency across three nodes and sync throughput, with real libp2p nodes on
// 127.0.0.1 in one process. The validator only parses and stores in memory (no signature
// checks), so these are transport numbers. Run: npx tsc -b packages/network && node packages/network/bench/network-bench.mjs
import '../dist/polyfills.js'
import { createHash, randomBytes } from 'node:crypto'
import { createPeerKey, startNetwork } from '../dist/index.js'

const REPO = 'bench'
const envelope = (keyid, seq, pad = 1100) => new TextEncoder().encode(JSON.stringify({ repoId: REPO, keyid, seq, pad: randomBytes(pad).toString('base64') }))

class Source {
  logs = new Map()
  seen = new Set()
  add (keyid, seq, data) {
    if (this.seen.has(`${keyid}/${seq}`)) return false
    this.seen.add(`${keyid}/${seq}`)
    let log = this.logs.get(keyid)
    if (log === undefined) this.logs.set(keyid, log = [])
    log.push({ seq, data, id: createHash('sha256').update(data).digest('hex') })
    return true
  }
  count () { let n = 0; for (const l of this.logs.values()) n += l.length; return n }
  async heads () { return [...this.logs].map(([keyid, l]) => ({ repoId: REPO, keyid, seq: l.at(-1).seq, envelopeId: l.at(-1).id })) }
  async * envelopesAfter (_repo, keyid, after) { for (const e of this.logs.get(keyid) ?? []) if (e.seq > after) yield e.data }
}

const nodes = []
let lastRound
async function start ({ source = new Source(), bootstrap = [], onMessage = () => {} } = {}) {
  const net = await startNetwork({
    peerKey: await createPeerKey(),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: bootstrap.map(n => n.net.multiaddrs()[0]),
    loopbackNetwork: true,
    repoIds: [REPO],
    gossipRatePerPeer: 10_000,
    syncTimeoutMs: 600_000,
    validate: async (msg) => {
      onMessage(msg)
      const e = JSON.parse(new TextDecoder().decode(msg.data))
      return source.add(e.keyid, e.seq, msg.data) ? 'accept' : 'ignore'
    },
    sync: source,
    log: (event, fields) => { if (event === 'sync-round' && fields.received > 0) lastRound = fields }
  })
  const node = { net, source }
  nodes.push(node)
  return node
}
const waitFor = async (cond, ms = 120_000) => { const t = Date.now(); while (!cond()) { if (Date.now() - t > ms) throw new Error('timeout'); await new Promise(r => setTimeout(r, 2)) } }
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))] }

try {
  // ---- gossip latency: a -> hub -> c (two hops) ----
  const arrivals = new Map()
  const record = (who) => (msg) => { const k = createHash('sha256').update(msg.data).digest('hex'); arrivals.set(`${who}:${k}`, performance.now()) }
  const hub = await start({ onMessage: record('hub') })
  const a = await start({ bootstrap: [hub] })
  const c = await start({ bootstrap: [hub], onMessage: record('c') })
  await a.net.waitForTopicPeers(REPO, 1, 10_000)
  await c.net.waitForTopicPeers(REPO, 1, 10_000)
  await waitFor(() => hub.net.meshPeers(REPO).length === 2)
  await new Promise(r => setTimeout(r, 1500))
  const oneHop = []
  const twoHops = []
  const N = 200
  for (let i = 0; i < N; i++) {
    const data = envelope('gossip', i)
    const k = createHash('sha256').update(data).digest('hex')
    const t0 = performance.now()
    await a.net.publish(REPO, data)
    await waitFor(() => arrivals.has(`c:${k}`) && arrivals.has(`hub:${k}`), 10_000)
    oneHop.push(arrivals.get(`hub:${k}`) - t0)
    twoHops.push(arrivals.get(`c:${k}`) - t0)
    await new Promise(r => setTimeout(r, 5))
  }
  console.log(`gossip, ${N} messages of ~1.5 KiB, 3 nodes (a -> hub -> c):`)
  console.log(`  one hop  median ${pct(oneHop, 0.5).toFixed(2)} ms, p95 ${pct(oneHop, 0.95).toFixed(2)} ms, max ${Math.max(...oneHop).toFixed(2)} ms`)
  console.log(`  two hops median ${pct(twoHops, 0.5).toFixed(2)} ms, p95 ${pct(twoHops, 0.95).toFixed(2)} ms, max ${Math.max(...twoHops).toFixed(2)} ms`)

  // ---- sync throughput ----
  for (const [total, logs] of [[5000, 1], [5000, 50], [20000, 20]]) {
    const source = new Source()
    for (let l = 0; l < logs; l++) for (let seq = 0; seq < total / logs; seq++) source.add(`key-${l}`, seq, envelope(`key-${l}`, seq))
    const bytes = [...source.logs.values()].flat().reduce((n, e) => n + e.data.byteLength, 0)
    const holder = await start({ source })
    const rssBefore = process.memoryUsage().rss
    const t0 = performance.now()
    const late = await start({ bootstrap: [holder] })
    await waitFor(() => late.source.count() === total)
    const ms = performance.now() - t0
    await waitFor(() => lastRound !== undefined)
    console.log(`sync, ${total} envelopes in ${logs} log(s), avg ${(bytes / total / 1024).toFixed(2)} KiB: ${ms.toFixed(0)} ms from starting the late node` +
      ` (${(total / ms * 1000).toFixed(0)} envelopes/s); the round itself ${lastRound.ms} ms (${(total / lastRound.ms * 1000).toFixed(0)} envelopes/s, ${(bytes / lastRound.ms / 1024).toFixed(1)} MiB/s);` +
      ` rss +${((process.memoryUsage().rss - rssBefore) / 2 ** 20).toFixed(0)} MiB (the late node's copy included)`)
    lastRound = undefined
    await late.net.stop()
    await holder.net.stop()
  }
} finally {
  await Promise.allSettled(nodes.map(n => n.net.stop()))
}
