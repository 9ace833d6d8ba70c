import { createPeerScoreParams, createPeerScoreThresholds, validatePeerScoreParams, validatePeerScoreThresholds } from '@libp2p/gossipsub/score'
import type { PeerScoreParams, PeerScoreThresholds, TopicScoreParams } from '@libp2p/gossipsub/score'

/**
 * Peer scoring for our topics. What matters is P4 (invalid messages): every envelope that
 * `validate` rejects costs its sender count² × 10, so the third forged message takes a peer
 * from 0 to -90, below the graylist threshold (-80): gossipsub then drops everything it sends
 * and the network hangs up on it. Mesh-delivery penalties (P3, P3b) are off: attestations are
 * rare, and an honest quiet peer must not look like a peer that withholds messages.
 */
export const SCORE_THRESHOLDS: PeerScoreThresholds = {
  gossipThreshold: -10,
  publishThreshold: -50,
  graylistThreshold: -80,
  acceptPXThreshold: 100,
  opportunisticGraftThreshold: 5
}

export const TOPIC_SCORE: TopicScoreParams = {
  topicWeight: 1,
  // P1: a little credit for time in the mesh (at most +3 after 5 minutes)
  timeInMeshWeight: 0.01,
  timeInMeshQuantum: 1000,
  timeInMeshCap: 300,
  // P2: credit for delivering new valid messages first (at most +10)
  firstMessageDeliveriesWeight: 1,
  firstMessageDeliveriesDecay: 0.9,
  firstMessageDeliveriesCap: 10,
  // P3 / P3b: off
  meshMessageDeliveriesWeight: 0,
  meshMessageDeliveriesDecay: 0.5,
  meshMessageDeliveriesCap: 100,
  meshMessageDeliveriesThreshold: 1,
  meshMessageDeliveriesWindow: 10,
  meshMessageDeliveriesActivation: 5000,
  meshFailurePenaltyWeight: 0,
  meshFailurePenaltyDecay: 0.5,
  // P4: invalid messages; decays by 1% a second (about 5 minutes to forgive most of it)
  invalidMessageDeliveriesWeight: -10,
  invalidMessageDeliveriesDecay: 0.99
}

/**
 * Score parameters for the given topics. `loopbackNetwork` sets the IP-colocation weight to 0:
 * every local node shares 127.0.0.1, and more than 10 of them would otherwise be graylisted.
 */
export function createScoreParams (topics: string[], loopbackNetwork: boolean): PeerScoreParams {
  const params = createPeerScoreParams({
    topics: Object.fromEntries(topics.map(topic => [topic, { ...TOPIC_SCORE }])),
    topicScoreCap: 10,
    appSpecificScore: () => 0,
    appSpecificWeight: 1,
    ...(loopbackNetwork ? { IPColocationFactorWeight: 0 } : {}),
    decayInterval: 1000,
    decayToZero: 0.01
  })
  validatePeerScoreParams(params)
  return params
}

export function createScoreThresholds (): PeerScoreThresholds {
  const thresholds = createPeerScoreThresholds(SCORE_THRESHOLDS)
  validatePeerScoreThresholds(thresholds)
  return thresholds
}
