// A node that holds a store and serves it by sync (the other process of the catch-up benchmark).
//   node bench/lib/sync-source.js STORE_DIR REPO_ID
// Prints one JSON line {"multiaddr": …} when listening; stops on SIGTERM.
import '../../packages/network/dist/polyfills.js'
import { Store } from '@quorate/store'
import { createPeerKey, startNetwork } from '@quorate/network'

const [dir, repoId] = process.argv.slice(2)
const store = await Store.open(dir)
const net = await startNetwork({
  listen: ['/ip4/127.0.0.1/tcp/0'],
  loopbackNetwork: true,
  repoIds: [repoId],
  syncIntervalMs: 0,
  syncTimeoutMs: 3_600_000,
  peerKey: await createPeerKey(),
  bootstrap: [],
  validate: async () => 'ignore',
  sync: { heads: async () => await store.logHeads(), envelopesAfter: (r, k, s) => store.envelopesAfter(r, k, s) }
})
await store.logHeads() // the heads scan is start-up work, not catch-up
console.log(JSON.stringify({ multiaddr: net.multiaddrs()[0] }))
process.on('SIGTERM', () => { void net.stop().then(async () => await store.close()).finally(() => process.exit(0)) })
