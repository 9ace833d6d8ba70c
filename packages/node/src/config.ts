import { readFileSync, statSync } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import { parseFetchCacheConfig, parseFetchNetworkPolicy, parseRootsConfig, type FetchCacheConfig, type FetchNetworkPolicy, type RootsConfig } from '@quorate/builder'
import { QuorateError, isRepoId, parseBuilderKeyFile, parseJsonStrict, parsePolicy, type BuilderKeyPair, type Policy } from '@quorate/core'
import { defaultVerifyWorkers } from './verify-pool.js'

/** A node's own config file (never gossiped). Paths are relative to the config file. */
export interface NodeConfig {
  /** Where this config was read from (for messages). */
  file: string
  name: string
  dataDir: string
  builderKeyFile: string
  peerKeyFile: string
  policyFile: string
  listen: string[]
  announce: string[]
  bootstrap: string[]
  http: { host: string, port: number }
  adminToken?: string
  sandbox: 'bwrap' | 'none'
  /** Host uid/gid a root node runs its builds as (default 50999:50999); refused for non-root nodes. */
  sandboxUser?: { uid: number, gid: number }
  /** Where build work directories go (default: inside dataDir, or for a root node a directory of its own the build user can reach). */
  buildDir?: string
  /** What a fetch phase may reach beyond the internet's public addresses (and further ranges it may not). */
  fetchNetwork: FetchNetworkPolicy
  /** npm's cache kept between fetch phases of one repository (opt-in; see README "Fetch cache"). */
  fetchCache?: FetchCacheConfig
  /** Build roots: cache, size bounds, registries (TLS, credentials, mirrors) and offline layouts. */
  roots: RootsConfig
  pollIntervalSeconds: number
  backfill: number
  concurrency: number
  /** Tries of a failing build before its failure is signed as final (failure predicate v2). Default 3. */
  buildAttempts: number
  /** Wait before the first retry of a failed build, doubled for each further one, in seconds. Default 30. */
  retryBackoffSeconds: number
  /** The operator's statement that this key never signed anything: skip fetching its logs from peers on a new data directory. */
  keyIsNew: boolean
  loopbackNetwork: boolean
  /** Discover peers on the local network by multicast DNS (LANs only). */
  mdns: boolean
  credentials: Record<string, { token?: string, sshKeyFile?: string }>
  /** Shared secret for POST /v1/webhook (forge push webhooks, X-Hub-Signature-256). */
  webhookSecret?: string
  /** Where to say when a decision reaches a bad final answer (disputed, failed, a trusted commit contradicted) or an equivocation is found. */
  notify?: { webhookUrl?: string, command?: string[] }
  /** Repositories whose outputs, build logs and file lists are served only with a read token (their attestations stay public). */
  private: string[]
  /** `Authorization: Bearer <readToken>` (or the adminToken) reads private repositories' outputs, logs and file lists. */
  readToken?: string
  /** How often a running build, a first clone and catch-up sync log their progress at info level. Default 15. */
  progressIntervalSeconds: number
  /**
   * Per repository and signer: how many commits new to the commit indexes its ref observations
   * may add, as a burst and then per hour (default 100,000 then 10,000 an hour). Over it, the
   * envelopes are still stored (logs keep no gap) but their new commits are not indexed: a member
   * key flooding observations of invented commits cannot grow the indexes without bound.
   */
  commitIndexBudget: { burst: number, perHour: number }
  /**
   * Worker threads that verify incoming signatures while the main thread parses and stores
   * (0: verify on the main thread). Default: none up to two cores, then one per core beyond the
   * second, at most two (see defaultVerifyWorkers).
   */
  verifyWorkers: number
  /**
   * Largest file list (or other blob) this node fetches from or serves to peers, in bytes
   * (default 1 GiB: the list of several million files). Blobs travel by range to disk, so this
   * bounds disk and time, never memory.
   */
  maxFileListBytes: number
  /** Garbage collection of kept outputs, build logs and cached build roots (see README "Retention"). */
  retention: RetentionConfig
  /** MiB for decisions kept alone (default 128) and for whole one-commit answers (default 64). */
  decisionCache: { decisionMiB: number, answerMiB: number }
  /** Demo and test fault injection: this node plays a compromised CI that alters its outputs. */
  faultInjection?: { tamperOutput?: boolean, crashAfterPersist?: boolean }
}

/** What a node keeps of its builds: the newest first, within all three bounds, plus what trusted decisions need. */
export interface RetentionConfig {
  /** Builds (outputs and logs) older than this are removed, unless still needed (default 30 days; 0: no age limit). */
  maxAgeDays: number
  /** At most this many builds are kept, newest first (default 0: no count limit). */
  maxBuilds: number
  /** At most this many bytes of outputs and logs, newest first (default 0: no size limit). */
  maxBytes: number
  /** How often retention runs (default 60 minutes). */
  intervalMinutes: number
}

const ALLOWED = new Set(['commitIndexBudget', 'verifyWorkers', 'private', 'readToken', 'progressIntervalSeconds', 'retention', 'decisionCache', 'roots', 'sandboxUser', 'buildDir', 'fetchNetwork', 'fetchCache', 'name', 'dataDir', 'builderKeyFile', 'peerKeyFile', 'policyFile', 'listen', 'announce', 'bootstrap', 'http', 'adminToken', 'adminTokenFile', 'sandbox', 'pollIntervalSeconds', 'backfill', 'concurrency', 'buildAttempts', 'retryBackoffSeconds', 'keyIsNew', 'loopbackNetwork', 'credentials', 'faultInjection', 'webhookSecret', 'notify', 'mdns', 'maxFileListBytes'])

function bad (file: string, field: string, msg: string): never {
  throw new QuorateError('CONFIG_INVALID', `${file}: ${field}: ${msg}`, { file, field })
}

/**
 * A nested object of whole-number fields (node config "retention", "decisionCache"): refused
 * unless it is an object of `allowed` fields; gives each field's value, its default when absent.
 */
function intFields (file: string, name: string, value: unknown, allowed: readonly string[], example: string): (k: string, def: number, min: number, max: number) => number {
  if (value !== undefined && (typeof value !== 'object' || value === null || Array.isArray(value))) bad(file, name, `must be an object such as ${example}`)
  const o = (value ?? {}) as Record<string, unknown>
  for (const k of Object.keys(o)) if (!allowed.includes(k)) bad(file, `${name}.${k}`, `unknown field; allowed: ${allowed.join(', ')}`)
  return (k, def, min, max) => {
    const v = o[k] ?? def
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) bad(file, `${name}.${k}`, `must be a whole number from ${min} to ${max}`)
    return v
  }
}

export function readJsonFile (file: string, what: string): unknown {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as { code?: string }).code
    throw new QuorateError(code === 'ENOENT' ? 'NOT_FOUND' : 'CONFIG_INVALID', `${file}: cannot read the ${what} (${code ?? (err as Error).message}); check the path`, { file })
  }
  try {
    return parseJsonStrict(text, file)
  } catch (err) {
    throw new QuorateError('CONFIG_INVALID', `${file}: the ${what} is not valid JSON: ${(err as Error).message.replace(`${file}: `, '')}`, { file })
  }
}

/** Reads and validates a node config file; every error names the file and field. */
export function loadNodeConfig (file: string): NodeConfig {
  const raw = readJsonFile(file, 'node config')
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) bad(file, '(top level)', 'must be a JSON object; create one with "quorate init"')
  const c = raw as Record<string, unknown>
  for (const k of Object.keys(c)) if (!ALLOWED.has(k)) bad(file, k, `unknown field; allowed: ${[...ALLOWED].join(', ')}`)
  const base = dirname(resolve(file))
  const path = (k: string, def?: string): string => {
    const v = c[k] ?? def
    if (typeof v !== 'string' || v === '') bad(file, k, 'must be a file or directory path')
    return isAbsolute(v) ? v : resolve(base, v)
  }
  const strings = (k: string, def: string[]): string[] => {
    const v = c[k] ?? def
    if (!Array.isArray(v) || !v.every(x => typeof x === 'string' && x.startsWith('/'))) bad(file, k, 'must be a list of multiaddrs such as "/ip4/127.0.0.1/tcp/4001"')
    return v
  }
  const int = (k: string, def: number, min: number, max: number): number => {
    const v = c[k] ?? def
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(file, k, `must be a whole number from ${min} to ${max}`)
    return v
  }
  if (c.name !== undefined && (typeof c.name !== 'string' || c.name === '')) bad(file, 'name', 'must be a non-empty string')
  const http = (c.http ?? {}) as Record<string, unknown>
  if (typeof http !== 'object' || Array.isArray(http)) bad(file, 'http', 'must be an object {host, port}')
  const host = http.host ?? '127.0.0.1'
  const port = http.port ?? 8080
  if (typeof host !== 'string') bad(file, 'http.host', 'must be an address such as "127.0.0.1"')
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) bad(file, 'http.port', 'must be a port number (0 picks a free one)')
  if (c.adminToken !== undefined && (typeof c.adminToken !== 'string' || c.adminToken.length < 16)) bad(file, 'adminToken', 'must be a string of at least 16 characters (e.g. from "openssl rand -hex 24")')
  if (c.adminTokenFile !== undefined && c.adminToken !== undefined) bad(file, 'adminTokenFile', 'give either "adminTokenFile" or "adminToken", not both')
  const adminToken = c.adminTokenFile !== undefined ? readAdminTokenFile(file, path('adminTokenFile')) : c.adminToken as string | undefined
  if (c.sandbox !== undefined && c.sandbox !== 'bwrap' && c.sandbox !== 'none') bad(file, 'sandbox', 'must be "bwrap" (default) or "none" (no isolation: builds can read this node\'s files)')
  const su = c.sandboxUser as { uid?: unknown, gid?: unknown } | undefined
  const id = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v > 0 && v < 2 ** 32 - 1
  if (su !== undefined && (typeof su !== 'object' || su === null || Object.keys(su).some(k => k !== 'uid' && k !== 'gid') || !id(su.uid) || !id(su.gid))) {
    bad(file, 'sandboxUser', 'must be {"uid": N, "gid": N} with unprivileged ids (never 0), e.g. {"uid": 50999, "gid": 50999}; it is used only by a node running as root')
  }
  if (c.buildDir !== undefined && (typeof c.buildDir !== 'string' || c.buildDir.length === 0)) bad(file, 'buildDir', 'must be a directory path')
  let fetchNetwork: FetchNetworkPolicy
  try {
    fetchNetwork = parseFetchNetworkPolicy(c.fetchNetwork, 'fetchNetwork')
  } catch (err) {
    throw new QuorateError('CONFIG_INVALID', `${file}: ${(err as Error).message}`, { file, field: 'fetchNetwork' })
  }
  let fetchCache: FetchCacheConfig | undefined
  try {
    fetchCache = parseFetchCacheConfig(c.fetchCache, 'fetchCache', p => resolve(dirname(file), p))
  } catch (err) {
    throw new QuorateError('CONFIG_INVALID', `${file}: ${(err as Error).message}`, { file, field: (err as QuorateError).fields?.field ?? 'fetchCache' })
  }
  if (fetchCache !== undefined && c.sandbox === 'none') bad(file, 'fetchCache', 'needs the bwrap sandbox (it keeps the cache out of the build phase and checks it while no build runs); remove "fetchCache" or use "sandbox": "bwrap"')
  if (c.loopbackNetwork !== undefined && typeof c.loopbackNetwork !== 'boolean') bad(file, 'loopbackNetwork', 'must be true or false')
  if (c.mdns !== undefined && typeof c.mdns !== 'boolean') bad(file, 'mdns', 'must be true or false')
  if (c.keyIsNew !== undefined && typeof c.keyIsNew !== 'boolean') bad(file, 'keyIsNew', 'must be true or false (true only when this key has never signed anything)')
  let roots: RootsConfig
  try {
    roots = parseRootsConfig(c.roots, 'roots', p => resolve(dirname(file), p))
  } catch (err) {
    throw new QuorateError('CONFIG_INVALID', `${file}: ${(err as Error).message}`, { file, field: (err as QuorateError).fields?.field ?? 'roots' })
  }
  const credentials = (c.credentials ?? {}) as Record<string, { token?: string, sshKeyFile?: string }>
  if (typeof credentials !== 'object' || Array.isArray(credentials)) bad(file, 'credentials', 'must map repository ids to {token} or {sshKeyFile}')
  for (const [id, cred] of Object.entries(credentials)) {
    if (!isRepoId(id)) bad(file, `credentials.${id}`, 'keys must be repository ids from the policy')
    if (cred === null || typeof cred !== 'object' || Object.keys(cred).some(k => k !== 'token' && k !== 'sshKeyFile')) bad(file, `credentials.${id}`, 'must be {"token": "..."} or {"sshKeyFile": "/path"}')
  }
  if (c.webhookSecret !== undefined && (typeof c.webhookSecret !== 'string' || c.webhookSecret.length < 16)) bad(file, 'webhookSecret', 'must be a string of at least 16 characters, the same secret as in the forge\'s webhook settings')
  const notify = c.notify as NodeConfig['notify']
  if (notify !== undefined) {
    if (typeof notify !== 'object' || notify === null || Object.keys(notify).some(k => k !== 'webhookUrl' && k !== 'command')) bad(file, 'notify', 'must be {"webhookUrl": "https://…"} and/or {"command": ["/path/to/script", "arg"]}')
    if (notify.webhookUrl !== undefined && (typeof notify.webhookUrl !== 'string' || !/^https?:\/\//.test(notify.webhookUrl))) bad(file, 'notify.webhookUrl', 'must be an http(s) URL')
    if (notify.command !== undefined && (!Array.isArray(notify.command) || notify.command.length === 0 || !notify.command.every(x => typeof x === 'string'))) bad(file, 'notify.command', 'must be an argv array such as ["/usr/local/bin/page-oncall"] (no shell)')
  }
  const fi = c.faultInjection as NodeConfig['faultInjection']
  if (fi !== undefined && (typeof fi !== 'object' || fi === null || Object.keys(fi).some(k => k !== 'tamperOutput' && k !== 'crashAfterPersist'))) bad(file, 'faultInjection', 'only {"tamperOutput": true} (a compromised builder) and {"crashAfterPersist": true} (a crash test) exist, for demos and tests')
  const priv = (c.private ?? []) as string[]
  if (!Array.isArray(priv) || !priv.every(id => typeof id === 'string' && isRepoId(id))) bad(file, 'private', 'must be a list of repository ids from the policy, such as ["internal-app"]')
  if (c.readToken !== undefined && (typeof c.readToken !== 'string' || c.readToken.length < 16)) bad(file, 'readToken', 'must be a string of at least 16 characters (e.g. from "openssl rand -hex 24")')
  if (priv.length > 0 && c.readToken === undefined && adminToken === undefined) bad(file, 'readToken', 'private repositories need a "readToken" (or an "adminToken") that readers send as "Authorization: Bearer <token>"')
  const retInt = intFields(file, 'retention', c.retention, ['maxAgeDays', 'maxBuilds', 'maxBytes', 'intervalMinutes'], '{"maxAgeDays": 30, "maxBuilds": 1000, "maxBytes": 10000000000}')
  const retention: RetentionConfig = { maxAgeDays: retInt('maxAgeDays', 30, 0, 36_500), maxBuilds: retInt('maxBuilds', 0, 0, 1e9), maxBytes: retInt('maxBytes', 0, 0, Number.MAX_SAFE_INTEGER), intervalMinutes: Math.max(1, retInt('intervalMinutes', 60, 0, 10_080)) }
  const cib = c.commitIndexBudget as Record<string, unknown> | undefined
  const budgetHint = 'must be {"burst": N, "perHour": N} (whole numbers from 1 to 1000000000; default {"burst": 100000, "perHour": 10000})'
  if (cib !== undefined && (typeof cib !== 'object' || cib === null || Array.isArray(cib) || Object.keys(cib).some(k => k !== 'burst' && k !== 'perHour'))) bad(file, 'commitIndexBudget', budgetHint)
  const budgetInt = (k: 'burst' | 'perHour', def: number): number => {
    const v = cib?.[k] ?? def
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > 1e9) bad(file, `commitIndexBudget.${k}`, budgetHint)
    return v
  }
  const commitIndexBudget = { burst: budgetInt('burst', 100_000), perHour: budgetInt('perHour', 10_000) }
  const dcInt = intFields(file, 'decisionCache', c.decisionCache, ['decisionMiB', 'answerMiB'], '{"decisionMiB": 128, "answerMiB": 64}')
  const decisionCache = { decisionMiB: dcInt('decisionMiB', 128, 0, 1_000_000), answerMiB: dcInt('answerMiB', 64, 0, 1_000_000) }
  const dataDir = path('dataDir', 'data')
  assertPrivateDataDir(dataDir, file)
  return {
    file,
    name: (c.name as string | undefined) ?? 'quorate-node',
    dataDir,
    builderKeyFile: path('builderKeyFile', 'builder-key.json'),
    peerKeyFile: path('peerKeyFile', 'peer-key.json'),
    policyFile: path('policyFile', 'policy.json'),
    listen: strings('listen', ['/ip4/0.0.0.0/tcp/4001']),
    announce: strings('announce', []),
    bootstrap: strings('bootstrap', []),
    http: { host, port },
    ...(adminToken !== undefined ? { adminToken } : {}),
    sandbox: (c.sandbox as 'bwrap' | 'none' | undefined) ?? 'bwrap',
    ...(su !== undefined ? { sandboxUser: { uid: su.uid as number, gid: su.gid as number } } : {}),
    ...(c.buildDir !== undefined ? { buildDir: path('buildDir') } : {}),
    fetchNetwork,
    ...(fetchCache !== undefined ? { fetchCache } : {}),
    roots,
    pollIntervalSeconds: int('pollIntervalSeconds', 30, 1, 86_400),
    backfill: int('backfill', 10, 1, 10_000),
    concurrency: int('concurrency', 1, 1, 64),
    buildAttempts: int('buildAttempts', 3, 1, 100),
    retryBackoffSeconds: int('retryBackoffSeconds', 30, 0, 86_400),
    keyIsNew: c.keyIsNew === true,
    loopbackNetwork: c.loopbackNetwork === true,
    mdns: c.mdns === true,
    credentials,
    private: priv,
    ...(c.readToken !== undefined ? { readToken: c.readToken as string } : {}),
    progressIntervalSeconds: int('progressIntervalSeconds', 15, 1, 3600),
    verifyWorkers: int('verifyWorkers', defaultVerifyWorkers(), 0, 16),
    maxFileListBytes: int('maxFileListBytes', 1024 * 1024 * 1024, 64 * 1024, 64 * 1024 * 1024 * 1024),
    retention,
    commitIndexBudget,
    decisionCache,
    ...(fi !== undefined ? { faultInjection: fi } : {}),
    ...(c.webhookSecret !== undefined ? { webhookSecret: c.webhookSecret as string } : {}),
    ...(notify !== undefined ? { notify } : {})
  }
}

/**
 * Refuses a data directory that other users can write (its store, mirrors and build outputs
 * decide what this node signs). A directory that does not exist yet is created 0700 by the node.
 */
export function assertPrivateDataDir (dir: string, configFile: string): void {
  let mode: number
  try {
    mode = statSync(dir).mode
  } catch {
    return
  }
  if ((mode & 0o022) !== 0) {
    throw new QuorateError('CONFIG_INVALID', `${configFile}: dataDir ${dir} is writable by other users (mode ${(mode & 0o777).toString(8)}); run "chmod go-w ${dir}" (or "chmod 700 ${dir}")`, { file: configFile, field: 'dataDir' })
  }
}

/**
 * The admin token from its own file (node config "adminTokenFile"): one line, at least 16
 * characters, mode 0600 (a token other users can read lets them re-queue builds).
 */
function readAdminTokenFile (configFile: string, tokenFile: string): string {
  let mode: number
  let text: string
  try {
    mode = statSync(tokenFile).mode
    text = readFileSync(tokenFile, 'utf8')
  } catch (err) {
    bad(configFile, 'adminTokenFile', `cannot read ${tokenFile} (${(err as { code?: string }).code ?? (err as Error).message}); create it with "openssl rand -hex 24 > ${tokenFile} && chmod 600 ${tokenFile}"`)
  }
  if ((mode & 0o077) !== 0) bad(configFile, 'adminTokenFile', `${tokenFile} is readable by other users (mode ${(mode & 0o777).toString(8)}); run "chmod 600 ${tokenFile}"`)
  const token = text.trim()
  if (token.length < 16 || /\s/.test(token)) bad(configFile, 'adminTokenFile', `${tokenFile} must hold one token of at least 16 characters without spaces (e.g. from "openssl rand -hex 24")`)
  return token
}

/** Refuses secret files that other users can read. */
export function assertPrivateFile (file: string, what: string): void {
  let mode: number
  try {
    mode = statSync(file).mode
  } catch (err) {
    throw new QuorateError('KEY_INVALID', `${file}: cannot read the ${what} (${(err as { code?: string }).code ?? 'error'}); create it with "quorate init"`, { file })
  }
  if ((mode & 0o077) !== 0) {
    throw new QuorateError('KEY_PERMISSIONS', `${file}: the ${what} is readable by other users (mode ${(mode & 0o777).toString(8)}); run "chmod 600 ${file}"`, { file })
  }
}

export function loadBuilderKey (file: string): BuilderKeyPair {
  assertPrivateFile(file, 'builder key')
  return parseBuilderKeyFile(readJsonFile(file, 'builder key'), file)
}

export function loadPolicyFile (file: string): Policy {
  return parsePolicy(readJsonFile(file, 'network policy'), file)
}
