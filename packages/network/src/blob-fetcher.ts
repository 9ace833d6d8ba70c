import { createHash, randomBytes } from 'node:crypto'
import { open, rename, rm, type FileHandle } from 'node:fs/promises'
import type { PeerId, Stream } from '@libp2p/interface'
import { QuorateError } from '@quorate/core'
import { BLOB_PROTOCOL, DEFAULT_BLOB_RANGE_BYTES, LEGACY_WHOLE_BLOB_BYTES, isSha256, requestBlobRange, violation } from './blob-protocol.js'
import { errorMessage, parsePeerId, violationOf } from './errors.js'
import { maySpeak } from './host.js'
import type { Host } from './host.js'
import type { PeerBans } from './peer-bans.js'
import type { FetchBlobOptions, NetworkLogger, NetworkStats, Startable } from './types.js'

const DEFAULT_FETCH_BLOB_TIMEOUT_MS = 30_000
/** A range that broke off without a protocol violation is asked again this many times (after 100, 200, 400, 800 ms). */
const RANGE_RETRIES = 4

export interface BlobFetcherInit {
  maxBlobBytes: number
  /** Bytes asked for per range request. */
  rangeBytes?: number
  selfId: string
  log: NetworkLogger
}

export interface BlobFetcherComponents {
  host: Pick<Host, 'getPeers' | 'dialProtocol' | 'peerStore'>
  bans: Pick<PeerBans, 'isBanned' | 'penalize'>
  stats: NetworkStats
}

/**
 * Fetches a blob by SHA-256 from peers, one peer at a time and range by range (blob-protocol.ts),
 * hashing the bytes as they arrive; the whole is kept only when it hashes to the digest asked for.
 * A peer that sends other bytes (in any range) or breaks the protocol is penalized and the next
 * one asked, from the start.
 */
export interface BlobFetcher extends Startable {
  /** Into memory: for blobs up to 64 MiB (build logs, small file lists). */
  fetchBlob: (sha256: string, opts?: FetchBlobOptions) => Promise<Uint8Array | undefined>
  /** Into a file, renamed to `path` once verified: for blobs of any size up to the cap. */
  fetchBlobFile: (sha256: string, path: string, opts?: FetchBlobOptions) => Promise<number | undefined>
}

/** Where the bytes of one attempt go; reset() starts over (another peer). */
interface BlobSink {
  write: (chunk: Uint8Array) => void | Promise<void>
  reset: () => void | Promise<void>
}

export function blobFetcher (init: BlobFetcherInit, components: BlobFetcherComponents): BlobFetcher {
  const { log } = init
  const { host, bans, stats } = components
  const rangeBytes = init.rangeBytes ?? DEFAULT_BLOB_RANGE_BYTES
  const active = new Set<Stream>()
  let stopped = false

  /** Fills `sink` from the first peer whose bytes hash to `sha256`; returns the blob's size. */
  async function fetchInto (sha256: string, sink: BlobSink, opts: FetchBlobOptions, memoryCap?: number): Promise<number | undefined> {
    if (!isSha256(sha256)) throw new QuorateError('USAGE', `fetchBlob: "${sha256}" is not a SHA-256 digest (64 lowercase hex characters)`, { sha256 })
    if (stopped) throw new QuorateError('NETWORK_FAILED', 'fetchBlob: the network is stopped', { sha256 })
    const maxBlobBytes = Math.min(init.maxBlobBytes, opts.maxBytes ?? Infinity, memoryCap ?? Infinity)
    const timeoutMs = opts.timeoutMs ?? DEFAULT_FETCH_BLOB_TIMEOUT_MS
    // The deadline moves on with every range that arrives: a large blob takes as long as it
    // keeps moving; a peer that stalls (or drips) is left timeoutMs after its last whole range.
    let deadline = Date.now() + timeoutMs
    const candidates = opts.peers ?? host.getPeers().map(p => p.toString())
    for (const peerId of candidates) {
      if (deadline - Date.now() <= 0 || stopped) break
      if (peerId === init.selfId || bans.isBanned(peerId)) continue
      let peer: PeerId
      try {
        peer = parsePeerId(peerId, 'fetchBlob')
      } catch (err) {
        log('blob-fetch-failed', { peer: peerId, sha256, error: errorMessage(err) })
        continue
      }
      if (opts.peers === undefined && !(await maySpeak(host, peer, BLOB_PROTOCOL))) continue
      await sink.reset()
      const hash = createHash('sha256')
      let size = opts.size
      let offset = 0
      let timedOut = false
      let retries = 0
      try {
        for (;;) {
          const remaining = deadline - Date.now()
          if (remaining <= 0) { timedOut = true; throw new QuorateError('NETWORK_FAILED', `blob fetch from ${peerId} timed out after ${offset} bytes`, { peer: peerId }) }
          const signal = AbortSignal.timeout(remaining)
          // A range is taken whole or not at all (at most rangeBytes held), so a range that broke
          // off (a reset stream, not a lie) is asked again from the same peer.
          let range: Uint8Array[] = []
          let answer
          let stream: Stream | undefined
          const onAbort = (): void => { timedOut = true; stream?.abort(new QuorateError('NETWORK_FAILED', `blob fetch from ${peerId} timed out`, { peer: peerId })) }
          signal.addEventListener('abort', onAbort)
          try {
            stream = await host.dialProtocol(peer, BLOB_PROTOCOL, { signal })
            active.add(stream)
            answer = await requestBlobRange(stream, sha256, { offset, length: rangeBytes }, { maxBlobBytes, ...(size !== undefined ? { expectedSize: size } : {}) }, chunk => { range.push(chunk) })
          } catch (err) {
            if (violationOf(err) !== undefined || timedOut || stopped || retries >= RANGE_RETRIES || (err as Error).name === 'UnsupportedProtocolError') throw err
            retries++
            range = []
            log('blob-range-retry', { peer: peerId, sha256, offset, error: errorMessage(err) })
            // e.g. the peer still closing our previous streams (four per connection): a moment later
            await new Promise(resolve => setTimeout(resolve, 50 * 2 ** retries))
            continue
          } finally {
            signal.removeEventListener('abort', onAbort)
            if (stream !== undefined) active.delete(stream)
          }
          retries = 0
          for (const chunk of range) {
            hash.update(chunk)
            await sink.write(chunk)
          }
          if (answer.status !== 'found') {
            log('blob-not-found', { peer: peerId, sha256, answer: answer.status, ...(answer.status === 'too-large' ? { size: answer.size, maxBytes: maxBlobBytes } : {}), offset })
            break
          }
          size = answer.size
          offset += answer.length
          deadline = Date.now() + timeoutMs
          if (offset >= size) {
            const actual = hash.digest('hex')
            if (actual !== sha256) throw violation(`the ${size} bytes sent hash to ${actual}, not the requested ${sha256}`, 'bad-blob', { actual })
            stats.blobsFetched++
            log('blob-fetched', { peer: peerId, sha256, bytes: size })
            return size
          }
        }
      } catch (err) {
        const kind = violationOf(err)
        if (kind !== undefined && !timedOut) bans.penalize(peerId, kind, errorMessage(err))
        log('blob-fetch-failed', { peer: peerId, sha256, error: errorMessage(err), offset })
      }
    }
    return undefined
  }

  return {
    stop () {
      stopped = true
      for (const stream of active) stream.abort(new QuorateError('NETWORK_FAILED', 'the network is stopping', {}))
    },

    async fetchBlob (sha256, opts = {}) {
      let chunks: Uint8Array[] = []
      const size = await fetchInto(sha256, {
        write: chunk => { chunks.push(chunk.slice()) },
        reset: () => { chunks = [] }
      }, opts, LEGACY_WHOLE_BLOB_BYTES)
      if (size === undefined) return undefined
      if (chunks.length === 1) return chunks[0]
      const bytes = new Uint8Array(size)
      let at = 0
      for (const c of chunks) { bytes.set(c, at); at += c.byteLength }
      return bytes
    },

    async fetchBlobFile (sha256, path, opts = {}) {
      const tmp = `${path}.${randomBytes(6).toString('hex')}.part`
      let file: FileHandle | undefined
      let position = 0
      try {
        file = await open(tmp, 'wx', 0o600)
        const f = file
        const size = await fetchInto(sha256, {
          write: async chunk => {
            let done = 0
            while (done < chunk.byteLength) {
              const { bytesWritten } = await f.write(chunk, done, chunk.byteLength - done, position)
              done += bytesWritten
              position += bytesWritten
            }
          },
          reset: async () => { if (position > 0) await f.truncate(0); position = 0 }
        }, opts)
        await file.close()
        file = undefined
        if (size === undefined) return undefined
        await rename(tmp, path)
        return size
      } finally {
        await file?.close().catch(() => {})
        await rm(tmp, { force: true })
      }
    }
  }
}
