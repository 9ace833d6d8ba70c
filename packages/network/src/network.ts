import { createHash } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { bootstrap } from '@libp2p/bootstrap'
import { gossipsub, TopicValidatorResult } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import type { Identify } from '@libp2p/identify'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { QuorateError, TokenBuckets, isQuorateError } from '@quorate/core'
import { createLibp2p } from 'libp2p'
import { BLOB_PROTOCOL, isSha256, requestBlob, serveBlobRequest } from './blob-protocol.js'
import { BootstrapKeeper } from './bootstrap-keeper.js'
import { resolveNetworkConfig } from './config.js'
import { createScoreParams, createScoreThresholds, SCORE_THRESHOLDS } from './gossip-params.js'
import { decodePeerKey } from './peer-key.js'
import { FLOOD_MESSAGES, PeerPenalties } from './peer-penalties.js'
import type { Misbehaviour } from './peer-penalties.js'
import { runSyncSession, SYNC_PROTOCOL } from './sync-protocol.js'
import { attestationTopic } from './topics.js'
import type { FetchBlobOptions, Network, NetworkInit, NetworkStats, SyncRoundResult, Verdict } from './types.js'

/** Sync rounds we answer at once, over all peers; more are refused (the peer retries later). */
const MAX_INBOUND_SYNC_ROUNDS = 8
/** The side that accepted a connection waits this long before syncing, so the dialer's round usually comes first and one round serves both. */
const INBOUND_SYNC_DELAY_MS = 1500
const DIAL_TIMEOUT_MS = 10_000
/** Misbehaviour points (see peer-penalties.ts) at which a peer is banned: 10, less a little for the decay between two offences. */
const BAN_POINTS = 9.5
/** After a sync round brought us new envelopes, other peers are synced with after this delay (bursts coalesce). */
const PROPAGATE_DELAY_MS = 500
const MAX_INBOUND_BLOB_REQUESTS = 16
const BLOB_SERVE_TIMEOUT_MS = 30_000
const DEFAULT_FETCH_BLOB_TIMEOUT_MS = 30_000
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

/** The kind of protocol violation an error records (`fields.violation`), looking through causes. */
function violationOf (err: unknown): Misbehaviour | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (isQuorateError(e) && typeof e.fields.violation === 'string') return e.fields.violation as Misbehaviour
  }
  return undefined
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
    peersBanned: 0,
    blobsServed: 0,
    blobsFetched: 0,
    streamViolations: 0
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
      peerDiscovery: [
        // dials once after 1 s and tags the peers so the connection pruner keeps them; the
        // BootstrapKeeper below dials at once and again whenever they go away
        ...(bootstrapPeers.length > 0 ? [bootstrap({ list: bootstrapPeers.map(p => p.multiaddr), tagTTL: Infinity })] : []),
        // mDNS only discovers: the peer:discovery handler below dials
        ...(config.mdns ? [mdns({ interval: 2000 })] : [])
      ],
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
  // bursts of twice the rate: a peer relaying a backlog after a reconnect is not cut off at once
  const rateLimiter = new TokenBuckets({ ratePerSecond: config.gossipRatePerPeer, burst: config.gossipRatePerPeer * 2 })
  const rateLimited = new Map<string, number>()
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
      // Ignored messages are not punished by gossipsub (unknown keys may come from an honest
      // relay with a newer policy), so a flood of them would never end: excess costs points.
      const excess = (rateLimited.get(from) ?? 0) + 1
      rateLimited.set(from, excess)
      if (excess % FLOOD_MESSAGES === 1) log('gossip-rate-limited', { repoId, from, excess })
      if (excess % FLOOD_MESSAGES === 0) penalize(from, 'flood', `${excess} gossip messages over the rate limit of ${config.gossipRatePerPeer}/s`)
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

  /** Hang up on a peer and keep it out (connection gater, bootstrap keeper) for banMs. */
  const ban = (id: string, fields: Record<string, unknown>): void => {
    if (isBanned(id) || config.banMs === 0 || id === selfId) return
    banned.set(id, Date.now() + config.banMs)
    stats.peersBanned++
    log('peer-banned', { peer: id, banMs: config.banMs, ...fields })
    node.hangUp(peerIdFromString(id)).catch(err => { log('hang-up-failed', { peer: id, error: message(err) }) })
  }

  // Sync and blob streams are not gossip: gossipsub never sees a peer that misbehaves there.
  const penalties = new PeerPenalties()
  const penalize = (peer: string, kind: Misbehaviour, detail: string): void => {
    if (stopped) return
    stats.streamViolations++
    const points = penalties.add(peer, kind, Date.now())
    log('peer-misbehaved', { peer, kind, points: Math.round(points * 10) / 10, detail })
    if (points >= BAN_POINTS) ban(peer, { reason: `misbehaviour on sync/blob streams (${kind})`, points })
  }

  // Graylisted peers (score below the threshold: forged messages) are hung up on and kept out for banMs.
  const onHeartbeat = (): void => {
    for (const peer of node.getPeers()) {
      const id = peer.toString()
      const score = gs.getScore(id)
      if (score < SCORE_THRESHOLDS.graylistThreshold) ban(id, { reason: 'gossip score below the graylist threshold', score })
    }
  }
  pubsub.addEventListener('gossipsub:heartbeat', onHeartbeat)

  // ---- sync ---------------------------------------------------------------------------------
  const activeStreams = new Set<Stream>()
  const rounds = new Map<string, Promise<SyncRoundResult>>()
  const lastSyncAt = new Map<string, number>()
  let inboundRounds = 0
  let inboundBlobRequests = 0
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
    else if (verdict === 'reject') {
      stats.syncRejected++
      penalize(from, 'rejected-envelope', `repository ${repoId}`)
    } else stats.syncIgnored++
    return verdict
  }

  /** Run a session with a round timeout; the stream is aborted on timeout or stop. */
  const session = async (stream: Stream, peer: string): Promise<SyncRoundResult> => {
    if (syncSource === undefined) throw new Error('unreachable: sync session without a source')
    activeStreams.add(stream)
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
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
      if (result.accepted > 0) propagate(peer)
      return result
    } catch (err) {
      stats.syncFailures++
      const kind = timedOut ? 'timeout' : violationOf(err)
      if (kind !== undefined) penalize(peer, kind, message(err))
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
      // new envelopes arrived from someone else while this round ran: one more round
      if (resyncAfterRound.delete(peerId)) scheduleResync(peerId)
    }
  }

  // A round that brought us new envelopes: the other peers may lack them too. Gossip does not
  // carry them (only what is published while we are connected), so sync with the others soon
  // rather than at the next period. Coalesced per peer; a peer mid-round gets one more round.
  const resyncAfterRound = new Set<string>()
  const resyncTimers = new Map<string, NodeJS.Timeout>()
  const scheduleResync = (peerId: string): void => {
    if (stopped || resyncTimers.has(peerId)) return
    const timer = setTimeout(() => {
      resyncTimers.delete(peerId)
      if (rounds.has(peerId)) resyncAfterRound.add(peerId)
      else backgroundSync(peerId, 'propagate')
    }, PROPAGATE_DELAY_MS)
    timer.unref()
    resyncTimers.set(peerId, timer)
  }
  const propagate = (from: string): void => {
    for (const peer of node.getPeers()) {
      const id = peer.toString()
      if (id !== from) scheduleResync(id)
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

  // ---- blobs ----------------------------------------------------------------------------------
  const blobSource = init.blobs
  if (blobSource !== undefined) {
    await node.handle(BLOB_PROTOCOL, (stream, connection) => {
      const peer = connection.remotePeer.toString()
      if (stopped || inboundBlobRequests >= MAX_INBOUND_BLOB_REQUESTS) {
        log('blob-refused', { peer, inFlight: inboundBlobRequests })
        stream.abort(new Error('too many blob requests in progress'))
        return
      }
      inboundBlobRequests++
      activeStreams.add(stream)
      let timedOut = false
      const timer = setTimeout(() => {
        timedOut = true
        stream.abort(new QuorateError('NETWORK_FAILED', `blob request from ${peer} timed out after ${BLOB_SERVE_TIMEOUT_MS} ms`, { peer }))
      }, BLOB_SERVE_TIMEOUT_MS)
      serveBlobRequest(stream, blobSource, config.maxBlobBytes)
        .then(served => {
          if (served.found) stats.blobsServed++
          log('blob-served', { peer, ...served })
        })
        .catch(err => {
          const kind = timedOut ? 'timeout' : violationOf(err)
          if (kind !== undefined) penalize(peer, kind, message(err))
          log('blob-serve-failed', { peer, error: message(err) })
        })
        .finally(() => {
          clearTimeout(timer)
          activeStreams.delete(stream)
          inboundBlobRequests--
        })
    }, { maxInboundStreams: 4, maxOutboundStreams: 4 })
  }

  /** Whether identify says the peer serves blobs; unknown (not identified yet) counts as yes. */
  const mayServeBlobs = async (peerId: string): Promise<boolean> => {
    try {
      const protocols = (await node.peerStore.get(peerIdFromString(peerId))).protocols
      return protocols.length === 0 || protocols.includes(BLOB_PROTOCOL)
    } catch {
      return true
    }
  }

  const fetchBlob = async (sha256: string, opts: FetchBlobOptions = {}): Promise<Uint8Array | undefined> => {
    if (!isSha256(sha256)) throw new QuorateError('USAGE', `fetchBlob: "${sha256}" is not a SHA-256 digest (64 lowercase hex characters)`, { sha256 })
    if (stopped) throw new QuorateError('NETWORK_FAILED', 'fetchBlob: the network is stopped', { sha256 })
    const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_FETCH_BLOB_TIMEOUT_MS)
    const candidates = opts.peers ?? node.getPeers().map(p => p.toString())
    for (const peerId of candidates) {
      const remaining = deadline - Date.now()
      if (remaining <= 0 || stopped) break
      if (peerId === selfId || isBanned(peerId)) continue
      if (opts.peers === undefined && !(await mayServeBlobs(peerId))) continue
      const signal = AbortSignal.timeout(remaining)
      let stream: Stream
      try {
        stream = await node.dialProtocol(parsePeerId(peerId, 'fetchBlob'), BLOB_PROTOCOL, { signal })
      } catch (err) {
        log('blob-fetch-failed', { peer: peerId, sha256, error: message(err) })
        continue
      }
      activeStreams.add(stream)
      const onAbort = (): void => { stream.abort(new QuorateError('NETWORK_FAILED', `blob fetch from ${peerId} timed out`, { peer: peerId })) }
      signal.addEventListener('abort', onAbort)
      try {
        const answer = await requestBlob(stream, sha256, config.maxBlobBytes)
        if (answer.status === 'found') {
          stats.blobsFetched++
          log('blob-fetched', { peer: peerId, sha256, bytes: answer.bytes.byteLength })
          return answer.bytes
        }
        log('blob-not-found', { peer: peerId, sha256, answer: answer.status })
      } catch (err) {
        const kind = violationOf(err)
        if (kind !== undefined && !signal.aborted) penalize(peerId, kind, message(err))
        log('blob-fetch-failed', { peer: peerId, sha256, error: message(err) })
      } finally {
        signal.removeEventListener('abort', onAbort)
        activeStreams.delete(stream)
      }
    }
    return undefined
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
  if (config.mdns) {
    node.addEventListener('peer:discovery', (evt) => {
      const id = evt.detail.id
      const peer = id.toString()
      if (stopped || peer === selfId || isBanned(peer) || node.getConnections(id).length > 0) return
      log('peer-discovered', { peer, addrs: evt.detail.multiaddrs.map(a => a.toString()) })
      node.dial(id, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
        .catch(err => { log('discovered-dial-failed', { peer, error: message(err) }) })
    })
  }
  node.addEventListener('peer:disconnect', (evt) => {
    const peer = evt.detail.toString()
    rateLimiter.forget(peer)
    rateLimited.delete(peer)
    resyncAfterRound.delete(peer)
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
  log('network-started', { peerId: selfId, multiaddrs: fullMultiaddrs(), repoIds: config.repoIds, sync: syncSource !== undefined, blobs: blobSource !== undefined, mdns: config.mdns })

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

    fetchBlob,

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
      for (const timer of resyncTimers.values()) clearTimeout(timer)
      resyncTimers.clear()
      pubsub.removeEventListener('gossipsub:heartbeat', onHeartbeat)
      for (const stream of activeStreams) stream.abort(new QuorateError('NETWORK_FAILED', 'the network is stopping', {}))
      await node.stop()
      log('network-stopped', { peerId: selfId })
    }
  }
}
