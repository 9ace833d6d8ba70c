import { createHash } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { bootstrap } from '@libp2p/bootstrap'
import { gossipsub, TopicValidatorResult } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Identify } from '@libp2p/identify'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { QuorateError } from '@quorate/core'
import { createLibp2p } from 'libp2p'
import { BootstrapKeeper } from './bootstrap-keeper.js'
import { resolveNetworkConfig } from './config.js'
import { createScoreParams, createScoreThresholds, SCORE_THRESHOLDS } from './gossip-params.js'
import { decodePeerKey } from './peer-key.js'
import { PeerRateLimiter } from './rate-limit.js'
import { runSyncSession, SYNC_PROTOCOL } from './sync-protocol.js'
import { attestationTopic } from './topics.js'
import type { Network, NetworkInit, NetworkStats, SyncRoundResult, Verdict } from './types.js'

/** Sync rounds we answer at once, over all peers; more are refused (the peer retries later). */
const MAX_INBOUND_SYNC_ROUNDS = 8
/** The side that accepted a connection waits this long before syncing, so the dialer's round usually comes first and one round serves both. */
const INBOUND_SYNC_DELAY_MS = 1500
const DIAL_TIMEOUT_MS = 10_000
/**
 * Yamux grows a stream's receive window up to 16 MiB on fast links, and a paused reader still
 * has to take in whatever window it granted. 1 MiB keeps a stalled sync stream's memory small
 * (and still moves 10 MiB/s at 100 ms RTT, far more than attestations need).
 */
const MAX_STREAM_WINDOW_BYTES = 1024 * 1024

type Node = Libp2p<{ identify: Identify, pubsub: GossipSub }>

/**
 * Members of gossipsub 17's class that its exported interface leaves out: the outbound streams
 * (a subscriber we have no stream to yet cannot be sent anything), the mesh, and peer scores.
 */
interface GossipsubInternals {
  streamsOutbound: Map<string, unknown>
  getMeshPeers: (topic: string) => string[]
  getScore: (peerId: string) => number
}

function gossipsubInternals (pubsub: GossipSub): GossipsubInternals {
  const g = pubsub as unknown as Partial<GossipsubInternals>
  if (!(g.streamsOutbound instanceof Map) || typeof g.getMeshPeers !== 'function' || typeof g.getScore !== 'function') {
    throw new QuorateError('NETWORK_FAILED', 'the installed @libp2p/gossipsub lacks streamsOutbound/getMeshPeers/getScore; install @libp2p/gossipsub@17', {})
  }
  return g as GossipsubInternals
}

const VERDICTS = new Set<Verdict>(['accept', 'reject', 'ignore'])

function toTopicResult (verdict: Verdict): TopicValidatorResult {
  return verdict === 'accept' ? TopicValidatorResult.Accept : verdict === 'reject' ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore
}

/** An error's message on one line (libp2p nests causes over several lines). */
function message (err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).trim().replace(/\s*\n\s*/g, '; ')
}

function parsePeerId (peerId: string, what: string): PeerId {
  try {
    return peerIdFromString(peerId)
  } catch (err) {
    throw new QuorateError('USAGE', `${what}: "${peerId}" is not a peer id (${message(err)})`, { peerId })
  }
}

/**
 * Start a libp2p node that gossips attestations (one topic per repository), passes every message
 * through `init.validate`, and, with `init.sync`, runs the sync protocol on every new connection
 * and every `syncIntervalMs`.
 */
export async function startNetwork (init: NetworkInit): Promise<Network> {
  const config = resolveNetworkConfig(init)
  const privateKey = decodePeerKey(init.peerKey)
  const selfId = peerIdFromPrivateKey(privateKey).toString()
  const log = init.log ?? (() => {})
  const validate = init.validate
  const syncSource = init.sync
  const repoSet = new Set(config.repoIds)
  const topicToRepo = new Map(config.repoIds.map(id => [attestationTopic(id), id]))
  const bootstrapPeers = config.bootstrap.filter(p => p.peerId !== selfId)

  const stats: NetworkStats = {
    gossipReceived: 0,
    gossipAccepted: 0,
    gossipRejected: 0,
    gossipIgnored: 0,
    syncReceived: 0,
    syncAccepted: 0,
    syncRejected: 0,
    syncIgnored: 0,
    syncSent: 0,
    syncRounds: 0,
    syncFailures: 0,
    peersBanned: 0
  }

  const banned = new Map<string, number>()
  const isBanned = (peerId: string): boolean => {
    const until = banned.get(peerId)
    if (until === undefined) return false
    if (until > Date.now()) return true
    banned.delete(peerId)
    return false
  }

  let node: Node
  try {
    // started below, once validators and handlers are in place
    node = await createLibp2p({
      start: false,
      privateKey,
      addresses: { listen: config.listen, announce: config.announce },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: MAX_STREAM_WINDOW_BYTES } })],
      peerDiscovery: bootstrapPeers.length > 0
        // dials once after 1 s and tags the peers so the connection pruner keeps them; the
        // BootstrapKeeper below dials at once and again whenever they go away
        ? [bootstrap({ list: bootstrapPeers.map(p => p.multiaddr), tagTTL: Infinity })]
        : [],
      connectionManager: config.loopbackNetwork ? { allow: ['/ip4/127.0.0.0/ipcidr/8'] } : {},
      connectionGater: {
        denyDialPeer: (peer: PeerId) => isBanned(peer.toString()),
        denyInboundEncryptedConnection: (peer: PeerId) => isBanned(peer.toString()),
        denyOutboundEncryptedConnection: (peer: PeerId) => isBanned(peer.toString())
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
          allowedTopics: [...topicToRepo.keys()],
          scoreParams: createScoreParams([...topicToRepo.keys()], config.loopbackNetwork),
          scoreThresholds: createScoreThresholds()
        })
      }
    })
  } catch (err) {
    throw new QuorateError('NETWORK_FAILED', `could not create the libp2p node: ${message(err)}`, {}, { cause: err })
  }
  const pubsub = node.services.pubsub
  const gs = gossipsubInternals(pubsub)

  // ---- gossip -------------------------------------------------------------------------------
  const rateLimiter = new PeerRateLimiter(config.gossipRatePerPeer)
  let validationsInFlight = 0

  const runValidate = async (repoId: string, data: Uint8Array, from: string, via: 'gossip' | 'sync'): Promise<Verdict> => {
    validationsInFlight++
    try {
      const verdict = await validate({ repoId, data, from, via })
      if (VERDICTS.has(verdict)) return verdict
      log('validate-bad-verdict', { repoId, from, via, verdict: String(verdict) })
      return 'ignore'
    } catch (err) {
      // a failing validator (store error, bug) is not the sender's fault: ignore, do not punish
      log('validate-failed', { repoId, from, via, error: message(err) })
      return 'ignore'
    } finally {
      validationsInFlight--
    }
  }

  const onGossip = async (repoId: string, from: string, data: Uint8Array): Promise<Verdict> => {
    stats.gossipReceived++
    let verdict: Verdict
    if (data.byteLength > config.maxMessageBytes) {
      log('gossip-oversized', { repoId, from, bytes: data.byteLength, maxMessageBytes: config.maxMessageBytes })
      verdict = 'reject'
    } else if (!rateLimiter.take(from, Date.now())) {
      log('gossip-rate-limited', { repoId, from })
      verdict = 'ignore'
    } else if (validationsInFlight >= config.maxConcurrentValidations) {
      log('gossip-overloaded', { repoId, from, inFlight: validationsInFlight })
      verdict = 'ignore'
    } else {
      verdict = await runValidate(repoId, data, from, 'gossip')
    }
    if (verdict === 'accept') stats.gossipAccepted++
    else if (verdict === 'reject') stats.gossipRejected++
    else stats.gossipIgnored++
    return verdict
  }

  for (const [topic, repoId] of topicToRepo) {
    pubsub.topicValidators.set(topic, async (peer, msg) => toTopicResult(await onGossip(repoId, peer.toString(), msg.data)))
  }

  // Graylisted peers (score below the threshold: forged messages) are hung up on and kept out for banMs.
  const onHeartbeat = (): void => {
    for (const peer of node.getPeers()) {
      const id = peer.toString()
      const score = gs.getScore(id)
      if (score >= SCORE_THRESHOLDS.graylistThreshold || isBanned(id) || config.banMs === 0) continue
      banned.set(id, Date.now() + config.banMs)
      stats.peersBanned++
      log('peer-banned', { peer: id, score, banMs: config.banMs })
      node.hangUp(peer).catch(err => { log('hang-up-failed', { peer: id, error: message(err) }) })
    }
  }
  pubsub.addEventListener('gossipsub:heartbeat', onHeartbeat)

  // ---- sync ---------------------------------------------------------------------------------
  const activeStreams = new Set<Stream>()
  const rounds = new Map<string, Promise<SyncRoundResult>>()
  const lastSyncAt = new Map<string, number>()
  let inboundRounds = 0
  let stopped = false

  const deliverSynced = async (repoId: string, data: Uint8Array, from: string): Promise<Verdict> => {
    stats.syncReceived++
    let verdict: Verdict
    if (!repoSet.has(repoId)) verdict = 'ignore'
    else if (data.byteLength > config.maxMessageBytes) {
      log('sync-oversized', { repoId, from, bytes: data.byteLength, maxMessageBytes: config.maxMessageBytes })
      verdict = 'reject'
    } else verdict = await runValidate(repoId, data, from, 'sync')
    if (verdict === 'accept') stats.syncAccepted++
    else if (verdict === 'reject') stats.syncRejected++
    else stats.syncIgnored++
    return verdict
  }

  /** Run a session with a round timeout; the stream is aborted on timeout or stop. */
  const session = async (stream: Stream, peer: string): Promise<SyncRoundResult> => {
    if (syncSource === undefined) throw new Error('unreachable: sync session without a source')
    activeStreams.add(stream)
    const timer = setTimeout(() => {
      stream.abort(new QuorateError('NETWORK_FAILED', `sync round with ${peer} timed out after ${config.syncTimeoutMs} ms`, { peer }))
    }, config.syncTimeoutMs)
    const started = Date.now()
    try {
      const result = await runSyncSession(stream, {
        source: syncSource,
        repoIds: config.repoIds,
        maxMessageBytes: config.maxMessageBytes,
        maxFrameBytes: config.maxSyncFrameBytes,
        deliver: async (repoId, data) => await deliverSynced(repoId, data, peer),
        log,
        peerId: peer
      })
      stats.syncRounds++
      stats.syncSent += result.sent
      lastSyncAt.set(peer, Date.now())
      log('sync-round', { peer, direction: stream.direction, ...result, ms: Date.now() - started })
      return result
    } catch (err) {
      stats.syncFailures++
      throw err
    } finally {
      clearTimeout(timer)
      activeStreams.delete(stream)
    }
  }

  const syncWith = async (peerId: string): Promise<SyncRoundResult> => {
    if (syncSource === undefined) {
      throw new QuorateError('USAGE', 'syncWith: this network was started without a sync source; pass NetworkInit.sync', {})
    }
    if (stopped) throw new QuorateError('NETWORK_FAILED', 'syncWith: the network is stopped', { peer: peerId })
    const existing = rounds.get(peerId)
    if (existing !== undefined) return await existing
    const peer = parsePeerId(peerId, 'syncWith')
    const round = (async () => {
      let stream: Stream
      try {
        stream = await node.dialProtocol(peer, SYNC_PROTOCOL, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      } catch (err) {
        stats.syncFailures++
        throw new QuorateError('NETWORK_FAILED', `sync with ${peerId}: could not open ${SYNC_PROTOCOL} (${message(err)}); is the peer connected and running sync?`, { peer: peerId }, { cause: err })
      }
      try {
        return await session(stream, peerId)
      } catch (err) {
        throw new QuorateError('NETWORK_FAILED', `sync with ${peerId} failed: ${message(err)}`, { peer: peerId }, { cause: err })
      }
    })()
    rounds.set(peerId, round)
    try {
      return await round
    } finally {
      rounds.delete(peerId)
    }
  }

  /** Whether identify says the peer runs sync; unknown (not identified yet) counts as yes. */
  const mayRunSync = async (peerId: string): Promise<boolean> => {
    try {
      const protocols = (await node.peerStore.get(peerIdFromString(peerId))).protocols
      return protocols.length === 0 || protocols.includes(SYNC_PROTOCOL)
    } catch {
      return true
    }
  }

  const backgroundSync = (peerId: string, reason: string): void => {
    if (stopped || rounds.has(peerId)) return
    mayRunSync(peerId)
      .then(async (yes) => { if (yes && !stopped) await syncWith(peerId) })
      .catch(err => { log('sync-failed', { peer: peerId, reason, error: message(err) }) })
  }

  const connectTimers = new Set<NodeJS.Timeout>()
  let syncTimer: NodeJS.Timeout | undefined
  if (syncSource !== undefined) {
    await node.handle(SYNC_PROTOCOL, (stream, connection) => {
      const peer = connection.remotePeer.toString()
      if (stopped || inboundRounds >= MAX_INBOUND_SYNC_ROUNDS) {
        log('sync-refused', { peer, inboundRounds })
        stream.abort(new Error('too many sync rounds in progress'))
        return
      }
      inboundRounds++
      session(stream, peer)
        .catch(err => { log('sync-failed', { peer, reason: 'inbound', error: message(err) }) })
        .finally(() => { inboundRounds-- })
    }, { maxInboundStreams: 2, maxOutboundStreams: 2 })

    node.addEventListener('connection:open', (evt: CustomEvent<Connection>) => {
      const conn = evt.detail
      const peer = conn.remotePeer.toString()
      if (conn.direction === 'outbound') {
        backgroundSync(peer, 'connect')
        return
      }
      const openedAt = Date.now()
      const timer = setTimeout(() => {
        connectTimers.delete(timer)
        if ((lastSyncAt.get(peer) ?? 0) < openedAt && node.getConnections(conn.remotePeer).length > 0) backgroundSync(peer, 'connect')
      }, INBOUND_SYNC_DELAY_MS)
      timer.unref()
      connectTimers.add(timer)
    })

  }

  // ---- connections --------------------------------------------------------------------------
  const keeper = new BootstrapKeeper(bootstrapPeers, {
    isConnected: (peerId) => node.getConnections(peerIdFromString(peerId)).length > 0,
    isBanned,
    dial: async (addr, signal) => await node.dial(addr, { signal }),
    log
  })
  node.addEventListener('peer:connect', (evt) => {
    const peer = evt.detail.toString()
    keeper.onConnect(peer)
    log('peer-connected', { peer })
  })
  node.addEventListener('peer:disconnect', (evt) => {
    const peer = evt.detail.toString()
    rateLimiter.forget(peer)
    log('peer-disconnected', { peer })
    keeper.onDisconnect(peer)
  })

  try {
    await node.start()
  } catch (err) {
    try {
      await node.stop()
    } catch {}
    throw new QuorateError('NETWORK_FAILED',
      `could not start the libp2p node on ${config.listen.join(', ')}: ${message(err)}; check that the listen addresses are local and the ports free`,
      { listen: config.listen }, { cause: err })
  }
  for (const topic of topicToRepo.keys()) pubsub.subscribe(topic) // gossipsub only subscribes once started
  keeper.start()
  if (syncSource !== undefined && config.syncIntervalMs > 0) {
    syncTimer = setInterval(() => {
      const now = Date.now()
      for (const peer of node.getPeers()) {
        const id = peer.toString()
        // the peer's own timer may just have synced with us; one round a period is enough
        if (now - (lastSyncAt.get(id) ?? 0) >= config.syncIntervalMs / 2) backgroundSync(id, 'periodic')
      }
    }, config.syncIntervalMs)
    syncTimer.unref()
  }

  const fullMultiaddrs = (): string[] => node.getMultiaddrs().map(ma => {
    const text = ma.toString()
    return text.includes('/p2p/') ? text : `${text}/p2p/${selfId}`
  })
  log('network-started', { peerId: selfId, multiaddrs: fullMultiaddrs(), repoIds: config.repoIds, sync: syncSource !== undefined })

  /** Subscribers we hold an outbound gossipsub stream to: the peers a publish reaches now. */
  const reachableSubscribers = (topic: string): string[] =>
    pubsub.getSubscribers(topic).map(p => p.toString()).filter(id => gs.streamsOutbound.has(id))

  const topicOf = (repoId: string, what: string): string => {
    if (!repoSet.has(repoId)) {
      throw new QuorateError('USAGE', `${what}: not subscribed to repository "${repoId}"; add it to NetworkInit.repoIds`, { repoId })
    }
    return attestationTopic(repoId)
  }

  return {
    peerId: selfId,
    multiaddrs: fullMultiaddrs,

    async publish (repoId, data) {
      if (stopped) throw new QuorateError('NETWORK_FAILED', 'publish: the network is stopped', { repoId })
      const topic = topicOf(repoId, 'publish')
      if (data.byteLength > config.maxMessageBytes) {
        throw new QuorateError('NETWORK_FAILED',
          `publish: message of ${data.byteLength} bytes exceeds maxMessageBytes (${config.maxMessageBytes}); peers would reject it`,
          { repoId, bytes: data.byteLength, maxMessageBytes: config.maxMessageBytes })
      }
      // With nobody subscribed, gossipsub would still mark the message as seen and refuse to
      // publish it again for two minutes; skip it and let sync deliver it.
      if (reachableSubscribers(topic).length === 0) {
        log('publish-no-peers', { repoId, bytes: data.byteLength })
        return { recipients: 0 }
      }
      try {
        const result = await pubsub.publish(topic, data)
        return { recipients: result.recipients.length }
      } catch (err) {
        if (message(err).includes('NoPeersSubscribedToTopic')) return { recipients: 0 }
        throw new QuorateError('NETWORK_FAILED', `publish to ${topic} failed: ${message(err)}`, { repoId }, { cause: err })
      }
    },

    connectedPeers: () => node.getPeers().map(p => p.toString()),

    topicPeers: (repoId) => reachableSubscribers(topicOf(repoId, 'topicPeers')),

    meshPeers: (repoId) => gs.getMeshPeers(topicOf(repoId, 'meshPeers')),

    async waitForTopicPeers (repoId, min, timeoutMs) {
      const topic = topicOf(repoId, 'waitForTopicPeers')
      const enough = (): boolean => reachableSubscribers(topic).length >= min
      if (enough()) return true
      return await new Promise<boolean>(resolve => {
        const done = (value: boolean): void => {
          clearTimeout(timer)
          clearInterval(poll)
          pubsub.removeEventListener('subscription-change', check)
          resolve(value)
        }
        const check = (): void => { if (stopped) done(false); else if (enough()) done(true) }
        const timer = setTimeout(() => { done(enough()) }, timeoutMs)
        // subscription-change covers joins; the poll covers stop() and peers that are dropped and re-added
        const poll = setInterval(check, 100)
        pubsub.addEventListener('subscription-change', check)
      })
    },

    syncWith,

    async dial (addr) {
      let ma
      try {
        ma = multiaddr(addr)
      } catch (err) {
        throw new QuorateError('USAGE', `dial: "${addr}" is not a valid multiaddr (${message(err)})`, { addr })
      }
      try {
        await node.dial(ma, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      } catch (err) {
        throw new QuorateError('NETWORK_FAILED', `dial ${addr} failed: ${message(err)}; check the address and that the peer is running`, { addr }, { cause: err })
      }
    },

    async hangUp (peerId) {
      await node.hangUp(parsePeerId(peerId, 'hangUp'))
    },

    stats: () => ({ ...stats }),

    async stop () {
      if (stopped) return
      stopped = true
      keeper.stop()
      if (syncTimer !== undefined) clearInterval(syncTimer)
      for (const timer of connectTimers) clearTimeout(timer)
      connectTimers.clear()
      pubsub.removeEventListener('gossipsub:heartbeat', onHeartbeat)
      for (const stream of activeStreams) stream.abort(new QuorateError('NETWORK_FAILED', 'the network is stopping', {}))
      await node.stop()
      log('network-stopped', { peerId: selfId })
    }
  }
}
