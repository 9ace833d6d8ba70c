import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { QuorateError, TokenBuckets } from '@quorate/core'
import { errorMessage } from './errors.js'
import { SCORE_THRESHOLDS } from './gossip-params.js'
import type { PeerBans } from './peer-bans.js'
import { FLOOD_MESSAGES } from './peer-penalties.js'
import { attestationTopic } from './topics.js'
import type { Validator } from './validator.js'
import type { NetworkLogger, NetworkStats, Startable, Verdict } from './types.js'

export interface GossipInit {
  repoIds: string[]
  maxMessageBytes: number
  /** Messages a second accepted from one propagating peer (bursts of twice that). */
  gossipRatePerPeer: number
  /** Validations in flight past which gossip is ignored (sync delivers it later). */
  maxConcurrentValidations: number
  log: NetworkLogger
}

export interface GossipComponents {
  pubsub: GossipSub
  validator: Validator
  bans: Pick<PeerBans, 'ban' | 'penalize'>
  stats: NetworkStats
  /** Peers connected now (for the graylist check at each heartbeat). */
  connectedPeers: () => string[]
}

/**
 * Attestation gossip: one gossipsub topic per repository. Every received message passes the
 * topic validator here (size cap → reject; per-peer rate limit and in-flight cap → ignore; then
 * the node's validate, whose verdict maps onto gossipsub's Accept / Reject / Ignore); peers whose
 * gossipsub score falls below the graylist threshold are banned at the heartbeat.
 */
export interface Gossip extends Startable {
  publish: (repoId: string, data: Uint8Array) => Promise<{ recipients: number }>
  /** Subscribers we hold an outbound gossipsub stream to: the peers a publish reaches now. */
  topicPeers: (repoId: string) => string[]
  meshPeers: (repoId: string) => string[]
  waitForTopicPeers: (repoId: string, min: number, timeoutMs: number) => Promise<boolean>
  /** A peer disconnected: drop its rate-limit state. */
  forgetPeer: (peerId: string) => void
}

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

export function toTopicResult (verdict: Verdict): TopicValidatorResult {
  return verdict === 'accept' ? TopicValidatorResult.Accept : verdict === 'reject' ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore
}

export function gossip (init: GossipInit, components: GossipComponents): Gossip {
  const { log, maxMessageBytes } = init
  const { pubsub, validator, bans, stats } = components
  const gs = gossipsubInternals(pubsub)
  const topicToRepo = new Map(init.repoIds.map(id => [attestationTopic(id), id]))
  // bursts of twice the rate: a peer relaying a backlog after a reconnect is not cut off at once
  const rateLimiter = new TokenBuckets({ ratePerSecond: init.gossipRatePerPeer, burst: init.gossipRatePerPeer * 2 })
  const rateLimited = new Map<string, number>()
  let stopped = false

  const onMessage = async (repoId: string, from: string, data: Uint8Array): Promise<Verdict> => {
    stats.gossipReceived++
    let verdict: Verdict
    if (data.byteLength > maxMessageBytes) {
      log('gossip-oversized', { repoId, from, bytes: data.byteLength, maxMessageBytes })
      verdict = 'reject'
    } else if (!rateLimiter.take(from, Date.now())) {
      // Ignored messages are not punished by gossipsub (unknown keys may come from an honest
      // relay with a newer policy), so a flood of them would never end: excess costs points.
      const excess = (rateLimited.get(from) ?? 0) + 1
      rateLimited.set(from, excess)
      if (excess % FLOOD_MESSAGES === 1) log('gossip-rate-limited', { repoId, from, excess })
      if (excess % FLOOD_MESSAGES === 0) bans.penalize(from, 'flood', `${excess} gossip messages over the rate limit of ${init.gossipRatePerPeer}/s`)
      verdict = 'ignore'
    } else if (validator.inFlight >= init.maxConcurrentValidations) {
      log('gossip-overloaded', { repoId, from, inFlight: validator.inFlight })
      verdict = 'ignore'
    } else {
      verdict = await validator.run({ repoId, data, from, via: 'gossip' })
    }
    if (verdict === 'accept') stats.gossipAccepted++
    else if (verdict === 'reject') stats.gossipRejected++
    else stats.gossipIgnored++
    return verdict
  }

  for (const [topic, repoId] of topicToRepo) {
    pubsub.topicValidators.set(topic, async (peer, msg) => toTopicResult(await onMessage(repoId, peer.toString(), msg.data)))
  }

  // Graylisted peers (score below the threshold: forged messages) are hung up on and kept out.
  const onHeartbeat = (): void => {
    stats.gossipHeartbeats++
    for (const id of components.connectedPeers()) {
      const score = gs.getScore(id)
      if (score < SCORE_THRESHOLDS.graylistThreshold) bans.ban(id, { reason: 'gossip score below the graylist threshold', score })
    }
  }

  const reachableSubscribers = (topic: string): string[] =>
    pubsub.getSubscribers(topic).map(p => p.toString()).filter(id => gs.streamsOutbound.has(id))

  const topicOf = (repoId: string, what: string): string => {
    if (!topicToRepo.has(attestationTopic(repoId))) {
      throw new QuorateError('USAGE', `${what}: not subscribed to repository "${repoId}"; add it to NetworkInit.repoIds`, { repoId })
    }
    return attestationTopic(repoId)
  }

  return {
    afterStart () {
      for (const topic of topicToRepo.keys()) pubsub.subscribe(topic) // gossipsub only subscribes once started
      pubsub.addEventListener('gossipsub:heartbeat', onHeartbeat)
    },

    stop () {
      stopped = true
      pubsub.removeEventListener('gossipsub:heartbeat', onHeartbeat)
    },

    async publish (repoId, data) {
      if (stopped) throw new QuorateError('NETWORK_FAILED', 'publish: the network is stopped', { repoId })
      const topic = topicOf(repoId, 'publish')
      if (data.byteLength > maxMessageBytes) {
        throw new QuorateError('NETWORK_FAILED',
          `publish: message of ${data.byteLength} bytes exceeds maxMessageBytes (${maxMessageBytes}); peers would reject it`,
          { repoId, bytes: data.byteLength, maxMessageBytes })
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
        if (errorMessage(err).includes('NoPeersSubscribedToTopic')) return { recipients: 0 }
        throw new QuorateError('NETWORK_FAILED', `publish to ${topic} failed: ${errorMessage(err)}`, { repoId }, { cause: err })
      }
    },

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

    forgetPeer (peerId) {
      rateLimiter.forget(peerId)
      rateLimited.delete(peerId)
    }
  }
}
