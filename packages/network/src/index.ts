/**
 * @quorate/network: the libp2p host. Gossips attestation envelopes (one gossipsub topic per
 * repository), runs every received message through the validator the node injects, and runs the
 * sync protocol so peers that were away fetch what they missed. Transport only: it never looks
 * inside an envelope. Which file does what: README.md "Where things are".
 *
 * @example
 * import { createPeerKey, startNetwork } from '@quorate/network'
 * import { Store } from '@quorate/store'
 *
 * const store = await Store.open(dataDir)
 * const net = await startNetwork({
 *   peerKey: await createPeerKey(),
 *   listen: ['/ip4/0.0.0.0/tcp/4001'],
 *   bootstrap: ['/ip4/192.0.2.7/tcp/4001/p2p/12D3KooW…'],
 *   repoIds: ['hello'],
 *   // yours: check the envelope against the policy, store it (synced), then 'accept'; or 'reject' / 'ignore'
 *   validate: async (msg) => await checkAndStore(msg.repoId, msg.data),
 *   sync: { heads: async () => await store.logHeads(), envelopesAfter: (repoId, keyid, afterSeq) => store.envelopesAfter(repoId, keyid, afterSeq) },
 *   blobs: { open: async (sha256) => await store.openBlob(sha256) } // read by range: large blobs stay on disk
 * })
 * await net.publish('hello', envelopeBytes) // { recipients: n }; 0 is fine, sync delivers later
 * await net.stop()
 */
import './polyfills.js'

export { createPeerKey, peerIdFromPeerKey } from './peer-key.js'
export { attestationTopic, repoIdFromTopic } from './topics.js'
export { startNetwork } from './network.js'
export { SYNC_PROTOCOL } from './sync-protocol.js'
export { BLOB_PROTOCOL, DEFAULT_BLOB_RANGE_BYTES, DEFAULT_MAX_BLOB_BYTES, LEGACY_WHOLE_BLOB_BYTES } from './blob-protocol.js'
export { DEFAULT_MAX_MESSAGE_BYTES } from './config.js'
export type {
  BlobReader,
  BlobSource,
  FetchBlobOptions,
  IncomingMessage,
  LogHead,
  Network,
  NetworkInit,
  NetworkLogger,
  NetworkStats,
  SyncRoundResult,
  SyncSource,
  Verdict
} from './types.js'
