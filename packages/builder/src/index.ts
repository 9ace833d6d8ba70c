/**
 * @quorate/builder: git mirrors, sandboxed builds, NAR hashing and file lists of build outputs,
 * deterministic OCI image packing.
 *
 * @example
 * import { GitMirror, hashOutput } from '@quorate/builder'
 * const mirror = new GitMirror({ url: 'https://example.org/app.git', dir: '/var/lib/quorate/mirrors/app' })
 * await mirror.fetch()
 * const heads = await mirror.resolveRefs({ branches: ['main', 'release/**'], tags: ['v*'] })
 * const digest = await hashOutput('/tmp/out')
 * digest.narSha256 // same as `nix-store --dump /tmp/out | sha256sum`
 */
export { hashOutput, hashNar, MAX_TOP_LEVEL_SUBJECTS } from './hash-output.js'
export type { OutputDigest, FileList, FileListEntry, HashOutputOptions } from './hash-output.js'
export { FileListScanner, readFileListEntries } from './file-list-reader.js'
export { GitMirror, globToRegExp, checkCommit } from './git-mirror.js'
export { readRepoRecipe, REPO_RECIPE_PATH } from './repo-recipe.js'
export type { GitMirrorInit, GitCredentials, RefPatterns, FetchOptions, CloneProgress, MissingBranches, CommitSummary as GitCommitSummary } from './git-mirror.js'
export { checkGitUrl, redactUrl, ALLOWED_GIT_SCHEMES } from './git-url.js'
export { runBuild } from './run-build.js'
export { removeTree } from './remove-tree.js'
export type { BuildRequest, BuildOutcome, BuildSuccess, BuildFailure, BuildDurations, BuildPhase } from './run-build.js'
export type { CapturedLog } from './captured-log.js'
export { LogCapture } from './captured-log.js'
export { environmentFingerprint } from './fingerprint.js'
export type { EnvironmentFingerprint } from './fingerprint.js'
export { detectSandbox, probeSandbox, bwrapArgs, SANDBOX_SRC, SANDBOX_HOME, BUILD_PATH } from './sandbox.js'
export { resolveBuildUser, prepareBuildArea, DEFAULT_ROOT_BUILD_ID } from './build-user.js'
export { isNodeTrouble, nodeTrouble, assertRoomForBuild } from './node-trouble.js'
export { parseFetchNetworkPolicy, DEFAULT_FETCH_NETWORK, DEFAULT_DENIED_RANGES } from './fetch-network.js'
export { FetchCache, parseFetchCacheConfig, DEFAULT_FETCH_CACHE_MAX_BYTES, DEFAULT_FETCH_CACHE_MAX_AGE_DAYS } from './fetch-cache.js'
export type { FetchCacheInit, FetchCacheConfig, FetchCacheLease, FetchCacheReport } from './fetch-cache.js'
export { packOciImage, parseImageSpec } from './oci-image.js'
export type { OciImageSpec, OciImageConfig, PackOciImageOptions, PackedOciImage } from './oci-image.js'
export type { LimitsMechanism } from './containment.js'
export type { SandboxLayout, SandboxTools } from './sandbox.js'
export type { BuildUser } from './build-user.js'
export type { FetchNetworkPolicy } from './fetch-network.js'
export type { BuildJob, BuildJobState, NewBuildJob, BuildQueue, RefMemory } from './build-queue.js'
export { watcher } from './watcher.js'
export type { Watcher, WatcherInit, WatcherComponents, WatchedRepository, RefMove, WatchProblem } from './watcher.js'
export { buildWorker } from './build-worker.js'
export type { BuildWorker, BuildWorkerInit, BuildWorkerComponents } from './build-worker.js'
export { BuildRootCache, ociArchitecture, parseRootsConfig } from './build-root.js'
export type { BuildRoot, BuildRootLease, BuildRootCacheInit, RegistryAccess, RootsConfig } from './build-root.js'
