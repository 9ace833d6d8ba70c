import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { QuorateError } from '@quorate/core'
import { DEFAULT_BLOB_RANGE_BYTES, DEFAULT_MAX_BLOB_BYTES, MAX_BLOB_RANGE_BYTES } from './blob-protocol.js'
import { DEFAULT_MAX_FRAME_BYTES } from './frames.js'
import { REPO_ID_PATTERN } from './topics.js'
import type { NetworkInit } from './types.js'

/** The multiaddr protocol code of `/p2p/<peer id>`. */
const CODE_P2P = 421

export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
/** One gossipsub RPC must carry a message; keep well under its 4 MiB frame limit. */
const MAX_MAX_MESSAGE_BYTES = 1024 * 1024

export interface BootstrapPeer {
  peerId: string
  multiaddr: string
}

/** NetworkInit checked once at the edge, with every default filled in. */
export interface NetworkConfig {
  listen: string[]
  announce: string[]
  bootstrap: BootstrapPeer[]
  loopbackNetwork: boolean
  repoIds: string[]
  maxMessageBytes: number
  maxSyncFrameBytes: number
  syncIntervalMs: number
  syncTimeoutMs: number
  syncIdleTimeoutMs: number
  gossipRatePerPeer: number
  maxConcurrentValidations: number
  banMs: number
  maxBlobBytes: number
  blobRangeBytes: number
  mdns: boolean
}

/** The smallest sync frame that carries a maxMessageBytes envelope as base64 inside JSON. */
export function syncFrameBytesFor (maxMessageBytes: number): number {
  return Math.ceil(maxMessageBytes / 3) * 4 + 1024
}

function invalid (field: string, message: string, fields: Record<string, unknown> = {}): QuorateError {
  return new QuorateError('CONFIG_INVALID', `network.${field}: ${message}`, { field, ...fields })
}

function checkMultiaddrs (field: string, value: unknown): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw invalid(field, 'must be an array of multiaddr strings')
  return value.map((entry, i) => {
    if (typeof entry !== 'string') throw invalid(`${field}[${i}]`, 'must be a multiaddr string such as /ip4/0.0.0.0/tcp/4001')
    try {
      return multiaddr(entry).toString()
    } catch (err) {
      throw invalid(`${field}[${i}]`, `"${entry}" is not a valid multiaddr (${(err as Error).message}); write it like /ip4/192.0.2.1/tcp/4001`, { value: entry })
    }
  })
}

/** Bootstrap entries must name the peer: without /p2p/<id> libp2p accepts them and never connects. */
export function parseBootstrap (entries: unknown): BootstrapPeer[] {
  const addrs = checkMultiaddrs('bootstrap', entries)
  return addrs.map((addr, i) => {
    const p2p = multiaddr(addr).getComponents().findLast(c => c.code === CODE_P2P)
    if (p2p?.value === undefined) {
      throw invalid(`bootstrap[${i}]`,
        `"${addr}" has no /p2p/<peer id>; append the peer id that the other node's \`quorate init\` printed (…/p2p/12D3KooW…)`,
        { value: addr })
    }
    try {
      peerIdFromString(p2p.value)
    } catch (err) {
      throw invalid(`bootstrap[${i}]`, `"${p2p.value}" in "${addr}" is not a valid peer id (${(err as Error).message})`, { value: addr })
    }
    return { peerId: p2p.value, multiaddr: addr }
  })
}

function positiveInt (field: string, value: unknown, fallback: number, opts: { min?: number, max?: number } = {}): number {
  if (value === undefined) return fallback
  const min = opts.min ?? 1
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || (opts.max !== undefined && value > opts.max)) {
    throw invalid(field, `must be an integer ${opts.max !== undefined ? `between ${min} and ${opts.max}` : `of at least ${min}`}, got ${String(value)}`, { value })
  }
  return value
}

export const DEFAULT_SYNC_IDLE_TIMEOUT_MS = 15_000

export function resolveNetworkConfig (init: NetworkInit): NetworkConfig {
  if (!(init.peerKey instanceof Uint8Array)) throw invalid('peerKey', 'must be the protobuf-encoded peer key bytes (createPeerKey())')
  if (typeof init.validate !== 'function') throw invalid('validate', 'must be a function (msg) => Promise<"accept" | "reject" | "ignore">')
  if (init.listen === undefined) throw invalid('listen', 'is required: the addresses to listen on, e.g. ["/ip4/0.0.0.0/tcp/4001"]')
  if (init.bootstrap === undefined) throw invalid('bootstrap', 'is required (an empty list for the first node)')
  if (!Array.isArray(init.repoIds)) throw invalid('repoIds', 'must be an array of repository ids')
  const repoIds = [...new Set(init.repoIds)]
  repoIds.forEach((id, i) => {
    if (typeof id !== 'string' || !REPO_ID_PATTERN.test(id)) {
      throw invalid(`repoIds[${i}]`, `"${String(id)}" is not a repository id (${REPO_ID_PATTERN.source}); use the policy's repository id, never a URL`, { value: id })
    }
  })
  if (init.blobs !== undefined && typeof init.blobs?.get !== 'function' && typeof init.blobs?.open !== 'function') throw invalid('blobs', 'must implement open(sha256) => Promise<BlobReader | undefined> or get(sha256) => Promise<Uint8Array | undefined>')
  if (init.mdns !== undefined && typeof init.mdns !== 'boolean') throw invalid('mdns', 'must be true or false')
  if (init.sync !== undefined && (typeof init.sync.heads !== 'function' || typeof init.sync.envelopesAfter !== 'function')) {
    throw invalid('sync', 'must implement heads() and envelopesAfter(repoId, keyid, afterSeq)')
  }
  const maxMessageBytes = positiveInt('maxMessageBytes', init.maxMessageBytes, DEFAULT_MAX_MESSAGE_BYTES, { max: MAX_MAX_MESSAGE_BYTES })
  const minFrame = syncFrameBytesFor(maxMessageBytes)
  const maxSyncFrameBytes = positiveInt('maxSyncFrameBytes', init.maxSyncFrameBytes, Math.max(DEFAULT_MAX_FRAME_BYTES, minFrame), { min: minFrame })
  const syncTimeoutMs = positiveInt('syncTimeoutMs', init.syncTimeoutMs, 60_000, { min: 100 })
  const syncIdleTimeoutMs = positiveInt('syncIdleTimeoutMs', init.syncIdleTimeoutMs, Math.min(DEFAULT_SYNC_IDLE_TIMEOUT_MS, syncTimeoutMs), { min: 100, max: syncTimeoutMs })
  return {
    listen: checkMultiaddrs('listen', init.listen),
    announce: checkMultiaddrs('announce', init.announce),
    bootstrap: parseBootstrap(init.bootstrap),
    loopbackNetwork: init.loopbackNetwork === true,
    repoIds,
    maxMessageBytes,
    maxSyncFrameBytes,
    syncIntervalMs: positiveInt('syncIntervalMs', init.syncIntervalMs, 30_000, { min: 0 }),
    syncTimeoutMs,
    syncIdleTimeoutMs,
    gossipRatePerPeer: positiveInt('gossipRatePerPeer', init.gossipRatePerPeer, 200),
    maxConcurrentValidations: positiveInt('maxConcurrentValidations', init.maxConcurrentValidations, 256),
    banMs: positiveInt('banMs', init.banMs, 600_000, { min: 0 }),
    maxBlobBytes: positiveInt('maxBlobBytes', init.maxBlobBytes, DEFAULT_MAX_BLOB_BYTES, { max: 64 * 1024 * 1024 * 1024 }),
    blobRangeBytes: positiveInt('blobRangeBytes', init.blobRangeBytes, DEFAULT_BLOB_RANGE_BYTES, { min: 64 * 1024, max: MAX_BLOB_RANGE_BYTES }),
    mdns: init.mdns === true
  }
}
