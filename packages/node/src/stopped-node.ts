/**
 * Commands on a stopped node's data directory (DESIGN.md "Packages", cli): backup, restore and
 * key rotation open the store directly and say clearly when a running node holds it. The cli
 * imports this module (`@quorate/node/stopped-node`) rather than the store or the network.
 */
export { backupDataDir, restoreDataDir, openStoppedStore } from './backup.js'
export { rotateBuilderKey } from './key-rotate.js'
export type { RotationResult } from './key-rotate.js'
export { initPeerKeyFile } from './peer-key-file.js'
