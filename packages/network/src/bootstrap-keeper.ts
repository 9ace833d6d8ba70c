import { multiaddr } from '@multiformats/multiaddr'
import type { BootstrapPeer } from './config.js'
import type { NetworkLogger } from './types.js'

export interface BootstrapKeeperDeps {
  isConnected: (peerId: string) => boolean
  isBanned: (peerId: string) => boolean
  dial: (addr: ReturnType<typeof multiaddr>, signal: AbortSignal) => Promise<unknown>
  log: NetworkLogger
}

export interface BackoffOptions {
  minMs: number
  maxMs: number
  dialTimeoutMs: number
  /** A connection that lasted this long resets the backoff; a shorter one (the peer hung up at once) does not. */
  stableMs: number
}

const DEFAULT_BACKOFF: BackoffOptions = { minMs: 1000, maxMs: 60_000, dialTimeoutMs: 10_000, stableMs: 2_000 }

/**
 * Keeps us connected to our bootstrap peers. @libp2p/bootstrap 12 dials its list once, shortly
 * after start; libp2p's reconnect queue gives up after 5 tries. A node whose bootstrap peer
 * restarts must find it again, so we redial forever with exponential backoff (1 s doubling to
 * 60 s), starting over once a connection has lasted `stableMs`. A peer that hangs up at once (it
 * banned us: its connection gater closes every new connection) is redialled ever more slowly,
 * not every second.
 */
export class BootstrapKeeper {
  private readonly peers: BootstrapPeer[]
  private readonly deps: BootstrapKeeperDeps
  private readonly opts: BackoffOptions
  private readonly delays = new Map<string, number>()
  private readonly timers = new Map<string, NodeJS.Timeout>()
  private readonly dialing = new Set<string>()
  private readonly connectedAt = new Map<string, number>()
  private readonly abort = new AbortController()
  private stopped = false

  constructor (peers: BootstrapPeer[], deps: BootstrapKeeperDeps, opts: Partial<BackoffOptions> = {}) {
    this.peers = peers
    this.deps = deps
    this.opts = { ...DEFAULT_BACKOFF, ...opts }
  }

  start (): void {
    for (const peer of this.peers) this.schedule(peer, 0)
  }

  /** Call when a peer disconnects: a bootstrap peer is redialled after the current backoff (reset if the connection was stable). */
  onDisconnect (peerId: string, nowMs = Date.now()): void {
    const peer = this.peers.find(p => p.peerId === peerId)
    if (peer === undefined) return
    const since = this.connectedAt.get(peerId)
    this.connectedAt.delete(peerId)
    let delay = this.delays.get(peerId) ?? this.opts.minMs
    if (since !== undefined && nowMs - since >= this.opts.stableMs) {
      delay = this.opts.minMs
      this.delays.set(peerId, delay)
    } else {
      this.delays.set(peerId, Math.min(delay * 2, this.opts.maxMs))
    }
    this.schedule(peer, delay)
  }

  /** Call when a peer connects. */
  onConnect (peerId: string, nowMs = Date.now()): void {
    if (this.peers.some(p => p.peerId === peerId)) this.connectedAt.set(peerId, nowMs)
  }

  stop (): void {
    this.stopped = true
    this.abort.abort()
    for (const timer of this.timers.values()) clearTimeout(timer)
    this.timers.clear()
  }

  private schedule (peer: BootstrapPeer, delayMs: number): void {
    if (this.stopped || this.timers.has(peer.peerId)) return
    const timer = setTimeout(() => {
      this.timers.delete(peer.peerId)
      void this.attempt(peer)
    }, delayMs)
    timer.unref()
    this.timers.set(peer.peerId, timer)
  }

  private async attempt (peer: BootstrapPeer): Promise<void> {
    if (this.stopped || this.dialing.has(peer.peerId)) return
    if (this.deps.isConnected(peer.peerId)) return
    const delay = this.delays.get(peer.peerId) ?? this.opts.minMs
    if (this.deps.isBanned(peer.peerId)) {
      this.schedule(peer, this.opts.maxMs)
      return
    }
    this.dialing.add(peer.peerId)
    try {
      await this.deps.dial(multiaddr(peer.multiaddr), AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.opts.dialTimeoutMs)]))
      this.deps.log('bootstrap-connected', { peer: peer.peerId, addr: peer.multiaddr })
    } catch (err) {
      if (this.stopped) return
      const next = Math.min(delay * 2, this.opts.maxMs)
      this.delays.set(peer.peerId, next)
      this.deps.log('bootstrap-dial-failed', { peer: peer.peerId, addr: peer.multiaddr, error: (err as Error).message, retryInMs: delay })
      this.schedule(peer, delay)
    } finally {
      this.dialing.delete(peer.peerId)
    }
  }
}
