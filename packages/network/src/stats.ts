import type { NetworkStats } from './types.js'

/** The counters behind `Network.stats()`, all zero; components increment their own. */
export function createStats (): NetworkStats {
  return {
    gossipReceived: 0,
    gossipAccepted: 0,
    gossipRejected: 0,
    gossipIgnored: 0,
    gossipHeartbeats: 0,
    syncReceived: 0,
    syncAccepted: 0,
    syncRejected: 0,
    syncIgnored: 0,
    syncSent: 0,
    syncRounds: 0,
    syncFailures: 0,
    syncRefused: 0,
    syncStalled: 0,
    peersBanned: 0,
    blobsServed: 0,
    blobsFetched: 0,
    streamViolations: 0
  }
}
