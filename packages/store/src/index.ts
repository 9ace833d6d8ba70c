/**
 * @quorate/store: the node's LevelDB (envelopes, indexes, builder logs, equivocation
 * proofs, build queue, blobs). One process opens a data directory at a time.
 *
 * @example
 * const store = await Store.open('/var/lib/quorate/db')
 * await store.putEnvelope(verified, bytes, { sync: true })
 * const envs = await store.envelopesForCommit('hello', commit)
 */
export { Store, STORE_FORMAT, SMALL_BLOB_BYTES } from './store.js'
export type { BlobFileReader } from './blob-files.js'
export type { StoreOptions, StoredEnvelopeMeta, PutOutcome, LogHead, EquivocationProof, BuildJob, BuildJobState, CommitInfo, BuildLogMeta, KeptBuild, NotIndexed } from './store.js'
