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
export { startNode } from './node.js'
export { writePeerKeyFile, loadPeerKey, initPeerKeyFile } from './peer-key-file.js'
export { backupDataDir, restoreDataDir, openStoppedStore, rotateBuilderKey } from './stopped-node.js'
export type { RotationResult } from './stopped-node.js'
export type { QuorateNode, NodeStats } from './node.js'
export { loadNodeConfig, loadBuilderKey, loadPolicyFile, assertPrivateFile, readJsonFile } from './config.js'
export type { NodeConfig } from './config.js'
export { createLogger, escapeForTerminal } from './logger.js'
export type { Logger, LogFormat, LogLevel } from './logger.js'
export { EventBus } from './events.js'
export type { NodeEvent } from './events.js'
export { dataDirLayout, prepareDataDir, BACKUP_PARTS } from './data-dir.js'
export type { DataDir } from './data-dir.js'
export { ownLog } from './own-log.js'
export type { OwnLog, OwnLogComponents, OwnEnvelope } from './own-log.js'
export { ownLogRecovery, NEW_KEY_MARKER } from './own-log-recovery.js'
export type { OwnLogRecovery, OwnLogRecoveryInit, OwnLogRecoveryComponents, OwnLogStatus } from './own-log-recovery.js'
export { latestTrusted, ownPreviousTip } from './ref-views.js'
export type { LatestAnswer } from './ref-views.js'
export { commitCandidates, commitLists, mirrorMoves, recentRefMoves } from './commit-views.js'
export type { CommitCandidates, CommitLists, CommitListsComponents, MirrorMove, MirrorMoves, SinceGone, UnverifiedClaim } from './commit-views.js'
export { publisher } from './publisher.js'
export type { Publisher, PublisherInit, PublisherComponents } from './publisher.js'
export { ingest } from './ingest.js'
export { createVerifyPool, defaultVerifyWorkers } from './verify-pool.js'
export type { VerifyPool, VerifyPoolInit, VerifyPoolStats } from './verify-pool.js'
export type { Ingest, IngestInit, IngestComponents, IngestStats } from './ingest.js'
export { decisions } from './decisions.js'
export type { Decisions, DecisionsInit, DecisionsComponents, DecisionReads, CommitDecision, LogCompleteness } from './decisions.js'
export { outputs } from './outputs.js'
export type { Outputs, OutputsComponents, BuiltOutput } from './outputs.js'
export { buildJobs, MAX_ATTEMPTS } from './build-jobs.js'
export type { BuildJobs, BuildJobsInit, BuildJobsComponents, RebuildAnswer } from './build-jobs.js'
export { httpApi, webhookSignatureMatches } from './http-api.js'
export type { HttpApi, HttpApiInit, HttpApiComponents, NodeStatus } from './http-api.js'
export { ROUTES, routePath, matchRoute, MalformedPathError } from './api-routes.js'
export type {
  Route, RouteName, ResponseOf, ParamsOf, BuilderCell, HealthResponse, StatusResponse, PolicyResponse, ReposResponse, CommitSummary,
  CommitsResponse, CommitsNotIndexed, UnverifiedClaimSummary, CommitResponse, LatestResponse, DigestResponse, PollResponse, RebuildResponse, WebhookResponse, ErrorResponse
} from './api-routes.js'
export { createNodeMetrics, collectNetworkMetrics, MetricsRegistry, Counter, Histogram } from './metrics.js'
export type { NodeMetrics } from './metrics.js'
export { createNotifier, noticeMemory } from './notifier.js'
export type { Notice, NoticeMemory, NoticeMemoryStore } from './notifier.js'
