import type { Stream } from '@libp2p/interface'
import { QuorateError } from '@quorate/core'
import { BLOB_PROTOCOL, serveBlobRequest } from './blob-protocol.js'
import { errorMessage, violationOf } from './errors.js'
import type { Host } from './host.js'
import type { PeerBans } from './peer-bans.js'
import type { BlobSource, NetworkLogger, NetworkStats, Startable } from './types.js'

const MAX_INBOUND_BLOB_REQUESTS = 16
const BLOB_SERVE_TIMEOUT_MS = 30_000

export interface BlobServerInit {
  maxBlobBytes: number
  log: NetworkLogger
}

export interface BlobServerComponents {
  host: Pick<Host, 'handle'>
  source: BlobSource
  bans: Pick<PeerBans, 'penalize'>
  stats: NetworkStats
}

/**
 * Serves content-addressed blobs on `/quorate/blob/1.0.0` (blob-protocol.ts): at most 16
 * requests at once, each aborted after 30 s; a bad request costs the peer points.
 */
export function blobServer (init: BlobServerInit, components: BlobServerComponents): Startable {
  const { log } = init
  const { host, source, bans, stats } = components
  const active = new Set<Stream>() // requests being served (at most MAX_INBOUND_BLOB_REQUESTS)
  let stopped = false

  const onRequest = (stream: Stream, peer: string): void => {
    if (stopped || active.size >= MAX_INBOUND_BLOB_REQUESTS) {
      log('blob-refused', { peer, inFlight: active.size })
      stream.abort(new Error('too many blob requests in progress'))
      return
    }
    active.add(stream)
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      stream.abort(new QuorateError('NETWORK_FAILED', `blob request from ${peer} timed out after ${BLOB_SERVE_TIMEOUT_MS} ms`, { peer }))
    }, BLOB_SERVE_TIMEOUT_MS)
    serveBlobRequest(stream, source, init.maxBlobBytes)
      .then(served => {
        if (served.found) stats.blobsServed++
        log('blob-served', { peer, ...served })
      })
      .catch(err => {
        const kind = timedOut ? 'timeout' : violationOf(err)
        if (kind !== undefined) bans.penalize(peer, kind, errorMessage(err))
        log('blob-serve-failed', { peer, error: errorMessage(err) })
      })
      .finally(() => {
        clearTimeout(timer)
        active.delete(stream)
      })
  }

  return {
    async start () {
      await host.handle(BLOB_PROTOCOL, (stream, connection) => { onRequest(stream, connection.remotePeer.toString()) }, { maxInboundStreams: 4, maxOutboundStreams: 4 })
    },
    stop () {
      stopped = true
      for (const stream of active) stream.abort(new QuorateError('NETWORK_FAILED', 'the network is stopping', {}))
    }
  }
}
