import type { PeerId, PeerInfo } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { BootstrapKeeper } from './bootstrap-keeper.js'
import type { BootstrapPeer } from './config.js'
import { errorMessage } from './errors.js'
import { DIAL_TIMEOUT_MS } from './host.js'
import type { Host } from './host.js'
import type { NetworkLogger, Startable } from './types.js'

export interface ConnectionsInit {
  bootstrapPeers: BootstrapPeer[]
  /** Dial every peer mDNS discovers. */
  mdns: boolean
  selfId: string
  log: NetworkLogger
}

export interface ConnectionsComponents {
  host: Pick<Host, 'getConnections' | 'dial' | 'addEventListener' | 'removeEventListener'>
  isBanned: (peerId: string) => boolean
  /** Called when a peer disconnects: components drop what they keep per peer. */
  onDisconnect: (peerId: string) => void
}

/**
 * Which peers we stay connected to: bootstrap peers are redialled forever with backoff
 * (bootstrap-keeper.ts), peers found by mDNS are dialled (mDNS only discovers), and a
 * disconnect tells the other components to forget the peer.
 */
export function connections (init: ConnectionsInit, components: ConnectionsComponents): Startable {
  const { log, selfId } = init
  const { host, isBanned } = components
  let stopped = false
  const keeper = new BootstrapKeeper(init.bootstrapPeers, {
    isConnected: (peerId) => host.getConnections(peerIdFromString(peerId)).length > 0,
    isBanned,
    dial: async (addr, signal) => await host.dial(addr, { signal }),
    log
  })

  const onConnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString()
    keeper.onConnect(peer)
    log('peer-connected', { peer })
  }
  const onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString()
    components.onDisconnect(peer)
    log('peer-disconnected', { peer })
    keeper.onDisconnect(peer)
  }
  const onDiscovery = (evt: CustomEvent<PeerInfo>): void => {
    const id = evt.detail.id
    const peer = id.toString()
    if (stopped || peer === selfId || isBanned(peer) || host.getConnections(id).length > 0) return
    log('peer-discovered', { peer, addrs: evt.detail.multiaddrs.map(a => a.toString()) })
    host.dial(id, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      .catch(err => { log('discovered-dial-failed', { peer, error: errorMessage(err) }) })
  }

  return {
    start () {
      host.addEventListener('peer:connect', onConnect)
      host.addEventListener('peer:disconnect', onDisconnect)
      if (init.mdns) host.addEventListener('peer:discovery', onDiscovery)
    },
    afterStart () {
      keeper.start()
    },
    stop () {
      stopped = true
      keeper.stop()
      host.removeEventListener('peer:connect', onConnect)
      host.removeEventListener('peer:disconnect', onDisconnect)
      host.removeEventListener('peer:discovery', onDiscovery)
    }
  }
}
