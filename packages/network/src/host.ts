import { createHash } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { bootstrap } from '@libp2p/bootstrap'
import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Identify } from '@libp2p/identify'
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import { mdns } from '@libp2p/mdns'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { QuorateError } from '@quorate/core'
import { createLibp2p } from 'libp2p'
import type { BootstrapPeer, NetworkConfig } from './config.js'
import { errorMessage } from './errors.js'
import { createScoreParams, createScoreThresholds } from './gossip-params.js'
import { attestationTopic } from './topics.js'

/**
 * Yamux grows a stream's receive window up to 16 MiB on fast links, and a paused reader still
 * has to take in whatever window it granted. 1 MiB keeps a stalled sync stream's memory small
 * (and still moves 10 MiB/s at 100 ms RTT, far more than attestations need).
 */
export const MAX_STREAM_WINDOW_BYTES = 1024 * 1024

/** How long any dial (a peer, or a protocol on it) may take. */
export const DIAL_TIMEOUT_MS = 10_000

/** The libp2p node every component runs on. */
export type Host = Libp2p<{ identify: Identify, pubsub: GossipSub }>

export interface HostInit {
  config: NetworkConfig
  privateKey: PrivateKey
  /** Bootstrap peers other than ourselves. */
  bootstrapPeers: BootstrapPeer[]
}

export interface HostComponents {
  /** The connection gater refuses these peers in both directions (peer-bans.ts). */
  isBanned: (peerId: string) => boolean
}

/**
 * Create (not start) the libp2p host: TCP, Noise, Yamux with a 1 MiB stream window, identify,
 * bootstrap and mDNS discovery when configured, gossipsub with our score parameters on one topic
 * per repository, and a connection gater that keeps banned peers out. Components register their
 * handlers and validators before `start()`.
 */
export async function createHost (init: HostInit, components: HostComponents): Promise<Host> {
  const { config, bootstrapPeers } = init
  const topics = config.repoIds.map(attestationTopic)
  const denied = (peer: PeerId): boolean => components.isBanned(peer.toString())
  try {
    return await createLibp2p({
      start: false,
      privateKey: init.privateKey,
      addresses: { listen: config.listen, announce: config.announce },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: MAX_STREAM_WINDOW_BYTES } })],
      peerDiscovery: [
        // dials once after 1 s and tags the peers so the connection pruner keeps them; the
        // BootstrapKeeper (connections.ts) dials at once and again whenever they go away
        ...(bootstrapPeers.length > 0 ? [bootstrap({ list: bootstrapPeers.map(p => p.multiaddr), tagTTL: Infinity })] : []),
        // mDNS only discovers: connections.ts dials what it finds
        ...(config.mdns ? [mdns({ interval: 2000 })] : [])
      ],
      connectionManager: config.loopbackNetwork ? { allow: ['/ip4/127.0.0.0/ipcidr/8'] } : {},
      connectionGater: {
        denyDialPeer: denied,
        denyInboundEncryptedConnection: denied,
        denyOutboundEncryptedConnection: denied
      },
      services: {
        identify: identify(),
        pubsub: gossipsub({
          globalSignaturePolicy: 'StrictNoSign',
          // message id = SHA-256 of the data: the same envelope relayed twice is one message
          msgIdFn: (msg) => createHash('sha256').update(msg.data).digest(),
          allowPublishToZeroTopicPeers: true,
          ignoreDuplicatePublishError: true,
          fallbackToFloodsub: false,
          emitSelf: false,
          allowedTopics: topics,
          scoreParams: createScoreParams(topics, config.loopbackNetwork),
          scoreThresholds: createScoreThresholds()
        })
      }
    })
  } catch (err) {
    throw new QuorateError('NETWORK_FAILED', `could not create the libp2p node: ${errorMessage(err)}`, {}, { cause: err })
  }
}

/** Start the host, with an error that says what to check. */
export async function startHost (host: Host, config: NetworkConfig): Promise<void> {
  try {
    await host.start()
  } catch (err) {
    try {
      await host.stop()
    } catch {}
    throw new QuorateError('NETWORK_FAILED',
      `could not start the libp2p node on ${config.listen.join(', ')}: ${errorMessage(err)}; check that the listen addresses are local and the ports free`,
      { listen: config.listen }, { cause: err })
  }
}

/** Our addresses, each ending in /p2p/<our peer id>. */
export function fullMultiaddrs (host: Host, selfId: string): string[] {
  return host.getMultiaddrs().map(ma => {
    const text = ma.toString()
    return text.includes('/p2p/') ? text : `${text}/p2p/${selfId}`
  })
}

/** Whether identify says the peer speaks `protocol`; unknown (not identified yet) counts as yes. */
export async function maySpeak (host: Pick<Host, 'peerStore'>, peerId: PeerId, protocol: string): Promise<boolean> {
  try {
    const protocols = (await host.peerStore.get(peerId)).protocols
    return protocols.length === 0 || protocols.includes(protocol)
  } catch {
    return true
  }
}
