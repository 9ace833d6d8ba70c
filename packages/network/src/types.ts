/** What the node says about one received message; maps onto gossipsub's Accept / Reject / Ignore. */
export type Verdict = 'accept' | 'reject' | 'ignore'

/** A message received by gossip or by sync, handed to `NetworkInit.validate`. */
export interface IncomingMessage {
  repoId: string
  data: Uint8Array
  /** Peer id of the peer that propagated it to us (not necessarily its author). */
  from: string
  /** How it arrived. */
  via: 'gossip' | 'sync'
}

/** Our newest entry of one (repository, key) log. */
export interface LogHead {
  repoId: string
  keyid: string
  seq: number
  envelopeId: string
  /**
   * The lowest sequence number below `seq` that this log lacks, when it has a gap (gossip can
   * deliver seq 5 before seq 4). Peers that hold it send the log from there. Omit when the log
   * is complete from 0 to `seq` (or the source cannot tell: then gaps are never filled by sync).
   */
  firstMissing?: number
}

/**
 * What the sync protocol serves from; the node implements it over its store.
 * `envelopesAfter(repoId, keyid, -1)` yields the whole log.
 */
export interface SyncSource {
  /** Our head of every (repo, key) log. */
  heads: () => Promise<LogHead[]>
  /** Raw envelope bytes of one log with seq > afterSeq, seq ascending. */
  envelopesAfter: (repoId: string, keyid: string, afterSeq: number) => AsyncIterable<Uint8Array>
}

/** One blob opened for reading by range: large blobs are served without being held whole. */
export interface BlobReader {
  /** The blob's size in bytes. */
  readonly size: number
  /** Up to `length` bytes from `offset` (fewer only at the end), valid until the next read (a reader may reuse its buffer). */
  read: (offset: number, length: number) => Promise<Uint8Array>
  close: () => Promise<void>
}

/**
 * Content-addressed blobs the node serves over `/quorate/blob/1.0.0` (the node passes its store's
 * blobs): `open` reads by range (large blobs stay on disk); `get` hands over the whole bytes
 * (small blobs, tests). `open` is used when both are given.
 */
export type BlobSource =
  | { open: (sha256: string) => Promise<BlobReader | undefined>, get?: (sha256: string) => Promise<Uint8Array | undefined> }
  | { get: (sha256: string) => Promise<Uint8Array | undefined>, open?: (sha256: string) => Promise<BlobReader | undefined> }

export interface FetchBlobOptions {
  /** Peers to ask, in this order. Default: every connected peer that may serve blobs. */
  peers?: string[]
  /**
   * Give up when no range has arrived for this long, in ms (a large blob keeps going while it
   * moves; a peer that stalls or drips is left after this long). Default 30000.
   */
  timeoutMs?: number
  /** Refuse blobs larger than this (default and ceiling: the network's maxBlobBytes). */
  maxBytes?: number
  /** The size the caller knows (from a signed file list): a peer announcing another size is lying. */
  size?: number
}

export type NetworkLogger = (event: string, fields: Record<string, unknown>) => void

export interface NetworkInit {
  /** Protobuf-encoded libp2p private key (see `createPeerKey`). */
  peerKey: Uint8Array
  /** Listen multiaddrs, e.g. `['/ip4/0.0.0.0/tcp/4001']`. */
  listen: string[]
  /** Addresses to announce instead of the listen addresses (public IP, DNS name). */
  announce?: string[]
  /** Bootstrap peers: multiaddrs ending in `/p2p/<peer id>`. */
  bootstrap: string[]
  /**
   * Test and demo setting: accept any number of connections from 127.0.0.0/8 and switch off
   * gossipsub's IP-colocation penalty. Never set it on a public network.
   */
  loopbackNetwork?: boolean
  /** One gossip topic per repository. */
  repoIds: string[]
  /** Largest accepted message; larger ones are rejected before `validate` is called. Default 65536. */
  maxMessageBytes?: number
  /**
   * Called for every gossip message and every envelope received by sync. The node checks the
   * envelope and stores valid ones before returning 'accept'. A throw counts as 'ignore'.
   */
  validate: (msg: IncomingMessage) => Promise<Verdict>
  /** When given, the node serves and runs the sync protocol. */
  sync?: SyncSource
  /** Structured log events (`event`, fields). */
  log?: NetworkLogger
  /** Periodic sync with every connected peer, in ms. Default 30000; 0 turns it off. */
  syncIntervalMs?: number
  /**
   * Every sync round ends after this long, in ms, whatever it waits for; its slot and its entry
   * are freed with it. Default 60000.
   */
  syncTimeoutMs?: number
  /**
   * End a sync round when the peer sends nothing for this long while we wait for it, in ms (a
   * peer holding a slot without progress). Default 15000, at most syncTimeoutMs.
   */
  syncIdleTimeoutMs?: number
  /** Largest sync frame accepted, in bytes. Default max(128 KiB, what a maxMessageBytes envelope needs). */
  maxSyncFrameBytes?: number
  /** Gossip messages accepted per second from one propagating peer before we ignore them. Default 200. */
  gossipRatePerPeer?: number
  /** Validations in flight at once; gossip beyond this is ignored (sync will deliver it). Default 256. */
  maxConcurrentValidations?: number
  /**
   * How long a misbehaving peer is kept out, in ms: gossip score below the graylist threshold
   * (forged messages), or repeated protocol violations and forged envelopes on sync and blob
   * streams. Default 600000; 0 never bans.
   */
  banMs?: number
  /** When given, the node serves blobs by SHA-256 on `/quorate/blob/1.0.0`. */
  blobs?: BlobSource
  /**
   * Largest blob served or fetched, in bytes. Default 1 GiB. Blobs travel by range and are
   * written to disk as they arrive (fetchBlobFile), so this bounds disk and time, not memory.
   */
  maxBlobBytes?: number
  /** Bytes asked for per range request. Default 4 MiB (tests lower it to cross range boundaries cheaply). */
  blobRangeBytes?: number
  /**
   * Find peers on the local network by mDNS (multicast DNS) and dial them. For LANs only: it
   * announces this node's addresses to every host on the link. Default false.
   */
  mdns?: boolean
}

export interface NetworkStats {
  gossipReceived: number
  gossipAccepted: number
  gossipRejected: number
  gossipIgnored: number
  /** Gossipsub heartbeats so far (each one sends IHAVE gossip, grafts and prunes, and bans graylisted peers). */
  gossipHeartbeats: number
  syncReceived: number
  syncAccepted: number
  syncRejected: number
  syncIgnored: number
  syncSent: number
  syncRounds: number
  syncFailures: number
  /** Inbound sync rounds refused because every slot open to that peer was taken. */
  syncRefused: number
  /** Rounds ended because the peer sent nothing while we waited for it (idle timeout, or the round deadline while waiting). */
  syncStalled: number
  peersBanned: number
  blobsServed: number
  blobsFetched: number
  /** Misbehaviour on sync and blob streams (malformed, oversized, truncated frames, timeouts, forged envelopes, bad blobs). */
  streamViolations: number
}

export interface SyncRoundResult {
  /** Envelopes received from the peer in this round. */
  received: number
  /** Of those, how many `validate` accepted. */
  accepted: number
  /** Envelopes we sent to the peer in this round. */
  sent: number
}

export interface Network {
  readonly peerId: string
  /** Our addresses, each ending in `/p2p/<peer id>`. */
  multiaddrs: () => string[]
  /**
   * Gossip `data` on the repository's topic. Returns 0 recipients (never throws) when no peer
   * is subscribed yet: the sync protocol delivers it later. Throws NETWORK_FAILED for data
   * larger than maxMessageBytes or a repository we are not subscribed to.
   */
  publish: (repoId: string, data: Uint8Array) => Promise<{ recipients: number }>
  connectedPeers: () => string[]
  /** Peers subscribed to the repository's topic that a publish reaches now. */
  topicPeers: (repoId: string) => string[]
  /**
   * Our gossipsub mesh for the repository: the peers we relay its messages to at once. Others
   * hear of them by gossip at a heartbeat, and a message relayed while the mesh was still
   * forming can miss a peer that joins right after; sync delivers it then.
   */
  meshPeers: (repoId: string) => string[]
  /** Resolves true once at least `min` peers are subscribed and reachable (see topicPeers), false after `timeoutMs`. */
  waitForTopicPeers: (repoId: string, min: number, timeoutMs: number) => Promise<boolean>
  /** Run one sync round with a peer now (both sides get what they lack). */
  syncWith: (peerId: string) => Promise<SyncRoundResult>
  /**
   * Fetch a blob by SHA-256 (64 lowercase hex) from peers, asking one at a time. The bytes are
   * verified against the hash before they are returned; a peer that sends other bytes is
   * penalized and the next one asked. Undefined when no peer has it (or all timed out).
   */
  fetchBlob: (sha256: string, opts?: FetchBlobOptions) => Promise<Uint8Array | undefined>
  /**
   * Like fetchBlob, for blobs that need not fit in memory: the bytes are written to a temporary
   * file next to `path` as they arrive, hashed on the way, and the file is renamed to `path`
   * only when its size and SHA-256 check out. Resolves the blob's size, or undefined (no file
   * left behind) when no peer had it with the right content.
   */
  fetchBlobFile: (sha256: string, path: string, opts?: FetchBlobOptions) => Promise<number | undefined>
  dial: (multiaddr: string) => Promise<void>
  hangUp: (peerId: string) => Promise<void>
  stats: () => NetworkStats
  stop: () => Promise<void>
}

/**
 * The lifecycle of a network component (js-libp2p's Startable, trimmed): `start` runs before the
 * libp2p host starts (register handlers, validators), `afterStart` once it listens (subscribe,
 * timers), `stop` in reverse order before the host stops.
 */
export interface Startable {
  start?: () => void | Promise<void>
  afterStart?: () => void | Promise<void>
  stop?: () => void | Promise<void>
}
