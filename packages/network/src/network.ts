import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { QuorateError } from '@quorate/core'
import { blobFetcher } from './blob-fetcher.js'
import { blobServer } from './blob-server.js'
import { resolveNetworkConfig } from './config.js'
import { connections } from './connections.js'
import { errorMessage, parsePeerId } from './errors.js'
import { gossip } from './gossip.js'
import { DIAL_TIMEOUT_MS, createHost, fullMultiaddrs, startHost } from './host.js'
import type { Host } from './host.js'
import { peerBans } from './peer-bans.js'
import { decodePeerKey } from './peer-key.js'
import { createStats } from './stats.js'
import { syncDelivery } from './sync-receive.js'
import { syncRounds } from './sync-rounds.js'
import { syncScheduler } from './sync-scheduler.js'
import type { SyncScheduler } from './sync-scheduler.js'
import { syncSlots } from './sync-slots.js'
import { validator } from './validator.js'
import type { Network, NetworkInit, Startable } from './types.js'

/**
 * Start a libp2p node that gossips attestations (one topic per repository), passes every message
 * through `init.validate`, and, with `init.sync`, runs the sync protocol on every new connection
 * and every `syncIntervalMs`.
 *
 * Wiring only: each job is a component in its own file (see the package README's map), created
 * here with its Init and the Components it needs, started in order and stopped in reverse.
 */
export async function startNetwork (init: NetworkInit): Promise<Network> {
  const config = resolveNetworkConfig(init)
  const privateKey = decodePeerKey(init.peerKey)
  const selfId = peerIdFromPrivateKey(privateKey).toString()
  const log = init.log ?? (() => {})
  const bootstrapPeers = config.bootstrap.filter(p => p.peerId !== selfId)
  const stats = createStats()

  // the host's connection gater asks the bans, and the bans hang up through the host
  let host: Host | undefined
  const bans = peerBans({ banMs: config.banMs, selfId, log }, {
    hangUp: async (peerId) => { await host?.hangUp(peerIdFromString(peerId)) },
    stats
  })
  host = await createHost({ config, privateKey, bootstrapPeers }, { isBanned: bans.isBanned })
  const libp2p = host

  const slots = syncSlots()
  const validation = validator({ validate: init.validate, log }, { onAccepted: slots.markProven })
  const attestations = gossip({ ...config, log }, {
    pubsub: libp2p.services.pubsub,
    validator: validation,
    bans,
    stats,
    connectedPeers: () => libp2p.getPeers().map(p => p.toString())
  })

  let scheduler: SyncScheduler | undefined
  const syncSource = init.sync
  const rounds = syncSource === undefined
    ? undefined
    : syncRounds({ config, log }, {
      host: libp2p,
      source: syncSource,
      deliver: syncDelivery({ repoIds: config.repoIds, maxMessageBytes: config.maxMessageBytes, log }, { validator: validation, bans, stats }),
      slots,
      bans,
      stats,
      onRoundDone: (peer, result) => { scheduler?.onRoundDone(peer, result) }
    })
  scheduler = rounds === undefined ? undefined : syncScheduler({ syncIntervalMs: config.syncIntervalMs, log }, { host: libp2p, rounds })

  const blobs = blobFetcher({ maxBlobBytes: config.maxBlobBytes, rangeBytes: config.blobRangeBytes, selfId, log }, { host: libp2p, bans, stats })
  const served = init.blobs === undefined ? undefined : blobServer({ maxBlobBytes: config.maxBlobBytes, log }, { host: libp2p, source: init.blobs, bans, stats })

  const peers = connections({ bootstrapPeers, mdns: config.mdns, selfId, log }, {
    host: libp2p,
    isBanned: bans.isBanned,
    onDisconnect: (peer) => {
      attestations.forgetPeer(peer)
      rounds?.forgetPeer(peer)
      scheduler?.forgetPeer(peer)
    }
  })

  // in start order; stopped in reverse
  const components: Startable[] = [bans, attestations, ...(rounds === undefined ? [] : [rounds]), ...(scheduler === undefined ? [] : [scheduler]), ...(served === undefined ? [] : [served]), blobs, peers]
  for (const c of components) await c.start?.()
  await startHost(libp2p, config)
  for (const c of components) await c.afterStart?.()
  log('network-started', { peerId: selfId, multiaddrs: fullMultiaddrs(libp2p, selfId), repoIds: config.repoIds, sync: syncSource !== undefined, blobs: served !== undefined, mdns: config.mdns })

  let stopped = false
  return {
    peerId: selfId,
    multiaddrs: () => fullMultiaddrs(libp2p, selfId),
    publish: attestations.publish,
    connectedPeers: () => libp2p.getPeers().map(p => p.toString()),
    topicPeers: attestations.topicPeers,
    meshPeers: attestations.meshPeers,
    waitForTopicPeers: attestations.waitForTopicPeers,

    async syncWith (peerId) {
      if (scheduler === undefined) {
        throw new QuorateError('USAGE', 'syncWith: this network was started without a sync source; pass NetworkInit.sync', {})
      }
      return await scheduler.syncWith(peerId)
    },

    fetchBlob: blobs.fetchBlob,
    fetchBlobFile: blobs.fetchBlobFile,

    async dial (addr) {
      let ma
      try {
        ma = multiaddr(addr)
      } catch (err) {
        throw new QuorateError('USAGE', `dial: "${addr}" is not a valid multiaddr (${errorMessage(err)})`, { addr })
      }
      try {
        await libp2p.dial(ma, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      } catch (err) {
        throw new QuorateError('NETWORK_FAILED', `dial ${addr} failed: ${errorMessage(err)}; check the address and that the peer is running`, { addr }, { cause: err })
      }
    },

    async hangUp (peerId) {
      await libp2p.hangUp(parsePeerId(peerId, 'hangUp'))
    },

    stats: () => ({ ...stats }),

    async stop () {
      if (stopped) return
      stopped = true
      for (const c of [...components].reverse()) await c.stop?.()
      await libp2p.stop()
      log('network-stopped', { peerId: selfId })
    }
  }
}
