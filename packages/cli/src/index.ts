/**
 * @quorate/cli: the `quorate` command. `verifyCommit` is also usable as a library by deploy tooling.
 *
 * @example
 * const report = await verifyCommit({ nodes: ['http://127.0.0.1:8080'], policy, repoId: 'hello', commit })
 * process.exit(report.exitCode)
 */
export { verifyCommit } from './verify.js'
export type { VerifyRequest, VerifyReport, VerifyStatus, NodeAnswer } from './verify.js'
export { auditCommit, auditEvidence, findCommitRepository, diffoscopeCommit, materializeOutput, renderText, renderMarkdown, renderJson, hasFindings } from './audit.js'
export type { AuditFinding, AuditBuild } from './audit.js'
export { nodeClient, NodeHttpError, DEFAULT_TIMEOUT_MS } from './node-client.js'
export type { NodeClient } from './node-client.js'
