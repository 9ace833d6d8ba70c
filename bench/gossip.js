// Gossip: from signing on one node until stored on all N (separate processes, real libp2p on
// 127.0.0.1, each with a LevelDB store and the node's validate path), next to one gossipsub
// heartbeat (1 s, the gossipsub default the network keeps). N = 5 (and 20 in the full run).
//   node bench/gossip.js [--quick]
import { fork } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { QUICK, envelopeFixture, fmt, makeKeys, percentile, record, sleep } from './lib/common.js'

const HEARTBEAT_MS = 1000
const SIZES = QUICK ? [5] : [5, 20]
const MESSAGES = QUICK ? 15 : 40
const REPO = 'bench'
const here = dirname(fileURLToPath(import.meta.url))
const keys = makeKeys(20)
// fresh envelopes for each message: the logs' first positions, one per key and then the next
const envelopes = envelopeFixture(keys, [REPO], QUICK ? 5_000 : 100_000)

async function run (n) {
  const peers = []
  const stored = new Map() // id -> Map(peer -> at)
  const published = new Map()
  const waiters = []
  const onMessage = (i) => (m) => {
    if (m.stored !== undefined) {
      if (!stored.has(m.stored)) stored.set(m.stored, new Map())
      stored.get(m.stored).set(i, m.at)
    }
    if (m.published !== undefined) published.set(m.published, m)
    for (const w of waiters.splice(0)) w()
  }
  const next = () => new Promise(resolve => waiters.push(resolve))
  try {
    for (let i = 0; i < n; i++) {
      // each node bootstraps to up to 4 random earlier ones: a connected graph where every node has
      // a few peers (a hub that everybody dials would prune most of them out of its mesh)
      const bootstrap = [...peers.keys()].sort(() => Math.random() - 0.5).slice(0, 4).map(j => peers[j].addr)
      const child = fork(join(here, 'lib', 'gossip-peer.js'), [JSON.stringify({ bootstrap, keys: keys.length, repo: REPO })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      const addr = await new Promise((resolve, reject) => { child.once('message', m => resolve(m.multiaddr)); child.once('exit', c => reject(new Error(`peer ${i} exited (${c})`))) })
      child.on('message', onMessage(i))
      peers.push({ child, addr })
    }
    await Promise.all(peers.map(p => new Promise(resolve => { p.child.once('message', resolve); p.child.send({ waitPeers: 1 }) })))
    await sleep(3 * HEARTBEAT_MS) // let the meshes form
    const latencies = []
    let missed = 0
    for (let m = 0; m < MESSAGES; m++) {
      const bytes = envelopes[m]
      const publisher = peers[m % n].child
      publisher.send({ publish: Buffer.from(bytes).toString('base64') })
      const deadline = performance.now() + 10 * HEARTBEAT_MS
      let id
      for (;;) {
        id ??= [...published.keys()][m]
        if (id !== undefined && stored.get(id)?.size === n - 1) break
        if (performance.now() > deadline) break
        await Promise.race([next(), sleep(50)])
      }
      const at = stored.get(id)
      if (id === undefined || at === undefined || at.size < n - 1) { missed++; continue }
      latencies.push(Math.max(...at.values()) - published.get(id).at)
      await sleep(100)
    }
    return { latencies, missed }
  } finally {
    for (const p of peers) p.child.send({ stop: true })
    await Promise.all(peers.map(p => new Promise(resolve => { if (p.child.exitCode !== null) resolve(); else p.child.once('exit', resolve) })))
  }
}

for (const n of SIZES) {
  const { latencies, missed } = await run(n)
  const p50 = percentile(latencies, 50)
  const p99 = percentile(latencies, 99)
  console.log(`  N=${n}: ${latencies.length} messages, p50 ${p50?.toFixed(1)} ms, p99 ${p99?.toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms, ${missed} not on all nodes within 10 heartbeats`)
  const ratio = missed > 0 ? Infinity : p99 / HEARTBEAT_MS
  record({
    id: `gossip-${n}`,
    benchmark: `gossip: signed on one node until stored on all ${n} (processes)`,
    figure: `p50 ${fmt(p50, 1)} ms, p99 ${fmt(p99, 1)} ms (${latencies.length} messages${missed > 0 ? `, ${missed} missed` : ''})`,
    limit: `${HEARTBEAT_MS} ms gossipsub heartbeat`,
    ratio,
    target: 'p99 < 1 heartbeat',
    meets: ratio < 1,
    values: { n, p50, p99, missed, messages: MESSAGES }
  })
}
