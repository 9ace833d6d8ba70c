/**
 * @quorate/node: the composition root. Loads a node config, then runs the watcher,
 * builder, store, libp2p network and HTTP API together.
 *
 * @example
 * const config = loadNodeConfig('node.json')
 * const node = await startNode(config, createLogger({ format: 'text' }))
 * // … later
 * await node.stop()
 */
export { startNode, writePeerKeyFile } from './node.js'
export type { QuorateNode, NodeStats } from './node.js'
export { loadNodeConfig, loadBuilderKey, loadPolicyFile, assertPrivateFile, readJsonFile } from './config.js'
export type { NodeConfig } from './config.js'
export { createLogger, escapeForTerminal } from './logger.js'
export type { Logger, LogFormat, LogLevel } from './logger.js'
export { EventBus } from './events.js'
export type { NodeEvent } from './events.js'
