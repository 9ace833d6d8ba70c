import type { PeerId, Stream } from '@libp2p/interface'
import { QuorateError } from '@quorate/core'
import { BLOB_PROTOCOL, isSha256, requestBlob } from './blob-protocol.js'
import { errorMessage, parsePeerId, violationOf } from './errors.js'
import { maySpeak } from './host.js'
import type { Host } from './host.js'
import type { PeerBans } from './peer-bans.js'
import type { FetchBlobOptions, NetworkLogger, NetworkStats, Startable } from './types.js'

const DEFAULT_FETCH_BLOB_TIMEOUT_MS = 30_000

export interface BlobFetcherInit {
  maxBlobBytes: number
  selfId: string
  log: NetworkLogger
}

export interface BlobFetcherComponents {
  host: Pick<Host, 'getPeers' | 'dialProtocol' | 'peerStore'>
  bans: Pick<PeerBans, 'isBanned' | 'penalize'>
  stats: NetworkStats
}

/**
 * Fetches a blob by SHA-256 from peers, one at a time, verifying the bytes against the hash
 * (blob-protocol.ts); a peer that sends other bytes is penalized and the next one asked.
 */
export interface BlobFetcher extends Startable {
  fetchBlob: (sha256: string, opts?: FetchBlobOptions) => Promise<Uint8Array | undefined>
}

export function blobFetcher (init: BlobFetcherInit, components: BlobFetcherComponents): BlobFetcher {
  const { log } = init
  const { host, bans, stats } = components
  const active = new Set<Stream>()
  let stopped = false

  return {
    stop () {
      stopped = true
      for (const stream of active) stream.abort(new QuorateError('NETWORK_FAILED', 'the network is stopping', {}))
    },

    async fetchBlob (sha256, opts = {}) {
      if (!isSha256(sha256)) throw new QuorateError('USAGE', `fetchBlob: "${sha256}" is not a SHA-256 digest (64 lowercase hex characters)`, { sha256 })
      if (stopped) throw new QuorateError('NETWORK_FAILED', 'fetchBlob: the network is stopped', { sha256 })
      const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_FETCH_BLOB_TIMEOUT_MS)
      const candidates = opts.peers ?? host.getPeers().map(p => p.toString())
      for (const peerId of candidates) {
        const remaining = deadline - Date.now()
        if (remaining <= 0 || stopped) break
        if (peerId === init.selfId || bans.isBanned(peerId)) continue
        let peer: PeerId
        try {
          peer = parsePeerId(peerId, 'fetchBlob')
        } catch (err) {
          log('blob-fetch-failed', { peer: peerId, sha256, error: errorMessage(err) })
          continue
        }
        if (opts.peers === undefined && !(await maySpeak(host, peer, BLOB_PROTOCOL))) continue
        const signal = AbortSignal.timeout(remaining)
        let stream: Stream
        try {
          stream = await host.dialProtocol(peer, BLOB_PROTOCOL, { signal })
        } catch (err) {
          log('blob-fetch-failed', { peer: peerId, sha256, error: errorMessage(err) })
          continue
        }
        active.add(stream)
        const onAbort = (): void => { stream.abort(new QuorateError('NETWORK_FAILED', `blob fetch from ${peerId} timed out`, { peer: peerId })) }
        signal.addEventListener('abort', onAbort)
        try {
          const answer = await requestBlob(stream, sha256, init.maxBlobBytes)
          if (answer.status === 'found') {
            stats.blobsFetched++
            log('blob-fetched', { peer: peerId, sha256, bytes: answer.bytes.byteLength })
            return answer.bytes
          }
          log('blob-not-found', { peer: peerId, sha256, answer: answer.status })
        } catch (err) {
          const kind = violationOf(err)
          if (kind !== undefined && !signal.aborted) bans.penalize(peerId, kind, errorMessage(err))
          log('blob-fetch-failed', { peer: peerId, sha256, error: errorMessage(err) })
        } finally {
          signal.removeEventListener('abort', onAbort)
          active.delete(stream)
        }
      }
      return undefined
    }
  }
}
