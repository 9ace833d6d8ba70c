// One node of the gossip benchmark (forked with IPC): a real libp2p node with a LevelDB store and
// the node's validate path; reports each envelope it stored with a wall-clock time (same host).
import '../../packages/network/dist/polyfills.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { checkEnvelope } from '@quorate/core'
import { Store } from '@quorate/store'
import { createPeerKey, startNetwork } from '@quorate/network'
import { CACHE, makeKeys, makePolicy } from './common.js'

const { bootstrap, keys: keyCount, repo } = JSON.parse(process.argv[2])
const policy = makePolicy(makeKeys(keyCount), [repo])
const now = () => performance.timeOrigin + performance.now()
const dir = mkdtempSync(join(CACHE, 'gossip-'))
const store = await Store.open(dir)
const net = await startNetwork({
  listen: ['/ip4/127.0.0.1/tcp/0'], loopbackNetwork: true, repoIds: [repo], syncIntervalMs: 0, bootstrap,
  peerKey: await createPeerKey(),
  validate: async (msg) => {
    const c = checkEnvelope(msg.data, policy, { repoId: msg.repoId })
    if (c.verdict !== 'accept') return c.verdict
    const out = await store.putEnvelope(c.verified, msg.data)
    if (out.status !== 'stored') return 'ignore'
    process.send({ stored: c.verified.id, at: now(), via: msg.via })
    return 'accept'
  }
})
process.send({ multiaddr: net.multiaddrs()[0] })
process.on('message', async (m) => {
  if (m.waitPeers !== undefined) {
    process.send({ ready: await net.waitForTopicPeers(repo, m.waitPeers, 60_000), mesh: net.meshPeers(repo).length })
  } else if (m.publish !== undefined) {
    // signed already; the publisher persists it (fsync) and publishes, as the node does
    const bytes = Buffer.from(m.publish, 'base64')
    const t = now()
    const c = checkEnvelope(bytes, policy, { repoId: repo })
    await store.putEnvelope(c.verified, bytes, { sync: true })
    const r = await net.publish(repo, bytes)
    process.send({ published: c.verified.id, at: t, recipients: r.recipients })
  } else if (m.stop === true) {
    await net.stop()
    await store.close()
    rmSync(dir, { recursive: true, force: true })
    process.exit(0)
  }
})
