import { canonicalBytes, canonicalize, parseJsonStrict } from './canonical-json.js'
import { QuorateError } from './errors.js'
import { gitDependencyUri } from './git-url.js'
import { isCommitSha, isSha256Hex, sha256Hex } from './hash.js'
import { parseRecipeSpec, type Recipe } from './recipe.js'

export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1'
export const PROVENANCE_PREDICATE = 'https://slsa.dev/provenance/v1'
/** Build failure v2: carries `attempt` and `final` (DESIGN.md "The attestation"). */
export const FAILURE_PREDICATE = 'https://quorate.dev/attestation/build-failure/v2'
/** Build failure v1 (no attempt count): still read, as a failure that is not final. */
export const FAILURE_PREDICATE_V1 = 'https://quorate.dev/attestation/build-failure/v1'
/** Ref observation v2: carries `previous`, `fastForward` and `introduced`. */
export const REF_OBSERVATION_PREDICATE = 'https://quorate.dev/attestation/ref-observation/v2'
/** Ref observation v1 (tip only): still read, as a move of unknown origin that introduced only its tip. */
export const REF_OBSERVATION_PREDICATE_V1 = 'https://quorate.dev/attestation/ref-observation/v1'
/** At most this many commits are listed in a ref observation's `introduced` (then `truncated` is true). */
export const MAX_INTRODUCED = 256
export const BUILD_TYPE = 'https://quorate.dev/buildtypes/reproducible-build/v1'

/** recipeDigest of a failure where the commit had no usable .quorate/recipe.json. */
export const NO_RECIPE_DIGEST = '0'.repeat(64)

export const REPO_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/

export function isRepoId (s: unknown): s is string {
  return typeof s === 'string' && REPO_ID.test(s)
}

/** Position in the signer's append-only log for one repository (DESIGN.md "Network"). */
export interface LogPosition { seq: number, prev: string | null }

export interface Subject { name: string, digest: Record<string, string>, mediaType?: string }

/** The mediaType that marks an OCI image manifest subject (so `--image` can find it). */
export const OCI_MANIFEST_MEDIA_TYPE = 'application/vnd.oci.image.manifest.v1+json'

/** recipeDigest = SHA-256 of the canonical JSON of the digest-relevant recipe fields. */
export function recipeDigestOf (recipe: Recipe): string {
  return sha256Hex(canonicalize({ root: recipe.root, fetch: recipe.fetch, build: recipe.build, output: recipe.output, outputKind: recipe.outputKind, image: recipe.image }))
}

/** The compared "result" of a build: its full subject list and file list digest. */
export function resultDigestOf (subjects: Subject[], fileListSha256: string): string {
  return sha256Hex(canonicalize({ subjects, fileListSha256 }))
}

export interface ProvenanceInput {
  repoId: string
  ref: string
  commit: string
  recipe: Recipe
  narSha256: string
  fileListSha256: string
  topLevelFiles: Array<{ name: string, sha256: string }>
  images?: Array<{ name: string, sha256: string }>
  logSha256: string
  fingerprint: Record<string, unknown>
  builderId: string
  /** The repository's URL from the policy: resolvedDependencies[0].uri is `git+<URL without credentials>@<ref>` (else `git+<repoId>@<ref>`). */
  repositoryUrl?: string
  /** Where the build log can be fetched (the builder's endpoint or an API path), for the build-log byproduct. */
  logUri?: string
  invocationId: string
  startedOn: string
  finishedOn: string
  log: LogPosition
}

function commitSubject (repoId: string, commit: string, digest: Record<string, string>): Subject {
  return { name: `${repoId}@${commit}`, digest }
}

export function makeProvenanceStatement (i: ProvenanceInput): Record<string, unknown> {
  const subject: Subject[] = [
    commitSubject(i.repoId, i.commit, { narSha256: i.narSha256 }),
    ...(i.topLevelFiles.length <= 16 ? i.topLevelFiles : []).map(f => ({ name: f.name, digest: { sha256: f.sha256 } })),
    ...(i.images ?? []).map(f => ({ name: f.name, digest: { sha256: f.sha256 }, mediaType: OCI_MANIFEST_MEDIA_TYPE }))
  ]
  return {
    _type: STATEMENT_TYPE,
    subject,
    predicateType: PROVENANCE_PREDICATE,
    predicate: {
      buildDefinition: {
        buildType: BUILD_TYPE,
        externalParameters: { repository: i.repoId, ref: i.ref, commit: i.commit, recipe: i.recipe, recipeDigest: recipeDigestOf(i.recipe) },
        internalParameters: i.fingerprint,
        resolvedDependencies: [{ uri: i.repositoryUrl !== undefined ? gitDependencyUri(i.repositoryUrl, i.ref) : `git+${i.repoId}@${i.ref}`, digest: { gitCommit: i.commit } }]
      },
      runDetails: {
        builder: { id: i.builderId, ...builderDependenciesOf(i.fingerprint) },
        metadata: { invocationId: i.invocationId, startedOn: i.startedOn, finishedOn: i.finishedOn, quorate_log: i.log },
        byproducts: [
          { name: 'file-list', digest: { sha256: i.fileListSha256 } },
          { name: 'build-log', digest: { sha256: i.logSha256 }, ...(i.logUri !== undefined ? { uri: i.logUri } : {}) }
        ]
      }
    }
  }
}

/**
 * SLSA `builder.builderDependencies`: the tools the recipe used (from the fingerprint's `tools`,
 * name → first line of `--version`), as resource descriptors. The fingerprint itself stays in
 * internalParameters.
 */
function builderDependenciesOf (fingerprint: Record<string, unknown>): { builderDependencies?: Array<Record<string, unknown>> } {
  const tools = fingerprint.tools
  if (tools === null || typeof tools !== 'object' || Array.isArray(tools)) return {}
  const deps = Object.entries(tools as Record<string, unknown>)
    .filter((e): e is [string, string] => typeof e[1] === 'string')
    .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    .map(([name, version]) => ({ name, uri: `pkg:generic/${encodeURIComponent(name)}`, annotations: { version } }))
  return deps.length > 0 ? { builderDependencies: deps } : {}
}

export interface FailureInput {
  repoId: string
  ref: string
  commit: string
  /** The recipe that failed; absent when the commit has no usable recipe (recipeFromRepo). */
  recipe?: Recipe
  exitStatus: number | null
  timedOut: boolean
  reason: string
  logSha256: string
  fingerprint: Record<string, unknown>
  builderId: string
  finishedOn: string
  log: LogPosition
  /** 1 for the first try of this build key, 2 for the first retry … (default 1). */
  attempt?: number
  /** True when this builder will not retry this build key unless an administrator asks (default false). */
  final?: boolean
}

export function makeFailureStatement (i: FailureInput): Record<string, unknown> {
  return {
    _type: STATEMENT_TYPE,
    subject: [commitSubject(i.repoId, i.commit, { gitCommit: i.commit })],
    predicateType: FAILURE_PREDICATE,
    predicate: {
      repository: i.repoId,
      ref: i.ref,
      commit: i.commit,
      recipeDigest: i.recipe !== undefined ? recipeDigestOf(i.recipe) : NO_RECIPE_DIGEST,
      exitStatus: i.exitStatus,
      timedOut: i.timedOut,
      reason: i.reason.slice(0, 2000),
      logSha256: i.logSha256,
      environment: i.fingerprint,
      builder: { id: i.builderId },
      finishedOn: i.finishedOn,
      attempt: i.attempt ?? 1,
      final: i.final ?? false,
      quorate_log: i.log
    }
  }
}

export interface RefObservationInput {
  repoId: string
  ref: string
  commit: string
  /** The tip this builder last signed for this ref, or null for its first observation of it. */
  previous?: string | null
  /** Whether `previous` is an ancestor of `commit` (false when previous is null). */
  fastForward?: boolean
  /**
   * Commits reachable from `commit` but not from `previous`, newest first (git rev-list commit ^previous);
   * more than MAX_INTRODUCED are cut to that many and marked truncated. Default: just the commit.
   */
  introduced?: string[]
  /** More commits came than `introduced` lists (also when `previous` could not be walked back to). */
  truncated?: boolean
  builderId: string
  observedOn: string
  log: LogPosition
}

export function makeRefObservationStatement (i: RefObservationInput): Record<string, unknown> {
  const all = i.introduced ?? [i.commit]
  const introduced = all.slice(0, MAX_INTRODUCED)
  const previous = i.previous ?? null
  return {
    _type: STATEMENT_TYPE,
    subject: [commitSubject(i.repoId, i.commit, { gitCommit: i.commit })],
    predicateType: REF_OBSERVATION_PREDICATE,
    predicate: {
      repository: i.repoId,
      ref: i.ref,
      commit: i.commit,
      previous,
      fastForward: previous !== null && (i.fastForward ?? false),
      introduced,
      truncated: i.truncated === true || all.length > introduced.length,
      builder: { id: i.builderId },
      observedOn: i.observedOn,
      quorate_log: i.log
    }
  }
}

export function statementBytes (statement: Record<string, unknown>): Uint8Array {
  return canonicalBytes(statement)
}

interface AttestationCommon {
  repoId: string
  commit: string
  ref: string
  log: LogPosition
  builderId: string
}

export interface BuildAttestation extends AttestationCommon {
  kind: 'build'
  recipe: Recipe
  recipeDigest: string
  narSha256: string
  subjects: Subject[]
  fileListSha256: string
  logSha256: string
  /** Digest of (subjects, file list digest): two builds agree only when this is equal. */
  resultDigest: string
  fingerprint: Record<string, unknown>
  startedOn: string
  finishedOn: string
}

export interface FailureAttestation extends AttestationCommon {
  kind: 'failure'
  recipeDigest: string
  exitStatus: number | null
  timedOut: boolean
  reason: string
  logSha256: string
  finishedOn: string
  /** 1, 2 …; v1 failures read as attempt 1. */
  attempt: number
  /** The builder will not retry this build key unless an administrator asks; v1 failures read as not final. */
  final: boolean
}

export interface RefAttestation extends AttestationCommon {
  kind: 'ref'
  observedOn: string
  /** The tip this signer observed before, or null (first observation; also v1 observations). */
  previous: string | null
  /** `previous` is an ancestor of `commit`. */
  fastForward: boolean
  /** Commits the move brought onto the ref, newest first (v1: just the tip). */
  introduced: string[]
  /** More commits came than `introduced` lists. */
  truncated: boolean
}

export type Attestation = BuildAttestation | FailureAttestation | RefAttestation

function fail (field: string, what: string): never {
  throw new QuorateError('STATEMENT_INVALID', `statement.${field}: ${what}`)
}

function obj (v: unknown, field: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(field, 'must be an object')
  return v as Record<string, unknown>
}

function str (v: unknown, field: string, max = 4096): string {
  if (typeof v !== 'string' || v.length > max) fail(field, `must be a string of at most ${max} characters`)
  return v as string
}

function parseLog (v: unknown, field: string): LogPosition {
  const l = obj(v, field)
  if (typeof l.seq !== 'number' || !Number.isSafeInteger(l.seq) || l.seq < 0) fail(`${field}.seq`, 'must be a whole number ≥ 0')
  if (l.seq === 0 ? l.prev !== null : !isSha256Hex(l.prev)) fail(`${field}.prev`, 'must be null at seq 0 and the previous envelope id after')
  return { seq: l.seq as number, prev: l.prev as string | null }
}

function parseCommitSubject (s: Record<string, unknown>, key: 'narSha256' | 'gitCommit'): { repoId: string, commit: string, digest: string } {
  const subj = s.subject
  if (!Array.isArray(subj) || subj.length === 0 || subj.length > 64) fail('subject', 'must be a non-empty list of at most 64 subjects')
  const first = obj(subj[0], 'subject[0]')
  const name = str(first.name, 'subject[0].name', 200)
  const at = name.lastIndexOf('@')
  const repoId = name.slice(0, at)
  const commit = name.slice(at + 1)
  if (at < 0 || !isRepoId(repoId) || !isCommitSha(commit)) fail('subject[0].name', 'must be "<repoId>@<commit>"')
  const digest = obj(first.digest, 'subject[0].digest')
  const d = digest[key]
  if (key === 'narSha256' ? !isSha256Hex(d) : d !== commit) fail(`subject[0].digest.${key}`, key === 'narSha256' ? 'must be 64 hex' : 'must equal the commit')
  return { repoId, commit, digest: d as string }
}

/**
 * Parses an attestation payload (the statement bytes inside a DSSE envelope) into a typed
 * value, refusing anything malformed. Does not check signatures.
 */
export function parseAttestation (payload: Uint8Array): Attestation {
  const s = obj(parseJsonStrict(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'), 'statement'), '')
  if (s._type !== STATEMENT_TYPE) fail('_type', `must be "${STATEMENT_TYPE}"`)
  const p = obj(s.predicate, 'predicate')
  switch (s.predicateType) {
    case PROVENANCE_PREDICATE: {
      const { repoId, commit, digest } = parseCommitSubject(s, 'narSha256')
      const subjects = (s.subject as unknown[]).map((x, i) => {
        const o = obj(x, `subject[${i}]`)
        const d = obj(o.digest, `subject[${i}].digest`)
        const digestOut: Record<string, string> = {}
        for (const [k, v] of Object.entries(d)) digestOut[k] = str(v, `subject[${i}].digest.${k}`, 200)
        const subject: Subject = { name: str(o.name, `subject[${i}].name`, 1024), digest: digestOut }
        if (o.mediaType !== undefined) subject.mediaType = str(o.mediaType, `subject[${i}].mediaType`, 200)
        return subject
      })
      const bd = obj(p.buildDefinition, 'predicate.buildDefinition')
      if (bd.buildType !== BUILD_TYPE) fail('predicate.buildDefinition.buildType', `must be "${BUILD_TYPE}"`)
      const ext = obj(bd.externalParameters, 'predicate.buildDefinition.externalParameters')
      if (ext.repository !== repoId || ext.commit !== commit) fail('predicate.buildDefinition.externalParameters', 'repository and commit must match subject[0]')
      let recipe: Recipe
      try {
        recipe = parseRecipeSpec(ext.recipe, 'statement.predicate.buildDefinition.externalParameters.recipe').recipe
      } catch (err) {
        throw new QuorateError('STATEMENT_INVALID', (err as Error).message)
      }
      const recipeDigest = recipeDigestOf(recipe)
      if (ext.recipeDigest !== recipeDigest) fail('predicate.buildDefinition.externalParameters.recipeDigest', 'does not match the recipe')
      const rd = obj(p.runDetails, 'predicate.runDetails')
      const md = obj(rd.metadata, 'predicate.runDetails.metadata')
      const byproducts = rd.byproducts
      if (!Array.isArray(byproducts)) fail('predicate.runDetails.byproducts', 'must be a list')
      const find = (name: string): string => {
        const b = (byproducts as unknown[]).find(x => (x as { name?: unknown })?.name === name) as { digest?: { sha256?: unknown } } | undefined
        const d = b?.digest?.sha256
        if (!isSha256Hex(d)) fail('predicate.runDetails.byproducts', `must name "${name}" with a sha256 digest`)
        return d as string
      }
      const fileListSha256 = find('file-list')
      return {
        kind: 'build',
        repoId,
        commit,
        ref: str(ext.ref, 'predicate.buildDefinition.externalParameters.ref', 256),
        log: parseLog(md.quorate_log, 'predicate.runDetails.metadata.quorate_log'),
        builderId: str(obj(rd.builder, 'predicate.runDetails.builder').id, 'predicate.runDetails.builder.id', 512),
        recipe,
        recipeDigest,
        narSha256: digest,
        subjects,
        fileListSha256,
        logSha256: find('build-log'),
        resultDigest: resultDigestOf(subjects, fileListSha256),
        fingerprint: obj(bd.internalParameters ?? {}, 'predicate.buildDefinition.internalParameters'),
        startedOn: str(md.startedOn ?? '', 'predicate.runDetails.metadata.startedOn', 64),
        finishedOn: str(md.finishedOn ?? '', 'predicate.runDetails.metadata.finishedOn', 64)
      }
    }
    case FAILURE_PREDICATE:
    case FAILURE_PREDICATE_V1: {
      const v2 = s.predicateType === FAILURE_PREDICATE
      const { repoId, commit } = parseCommitSubject(s, 'gitCommit')
      if (p.repository !== repoId || p.commit !== commit) fail('predicate', 'repository and commit must match subject[0]')
      if (!isSha256Hex(p.recipeDigest)) fail('predicate.recipeDigest', 'must be 64 hex')
      if (p.exitStatus !== null && !Number.isSafeInteger(p.exitStatus)) fail('predicate.exitStatus', 'must be a whole number or null')
      if (v2 && (typeof p.attempt !== 'number' || !Number.isSafeInteger(p.attempt) || p.attempt < 1)) fail('predicate.attempt', 'must be a whole number ≥ 1')
      if (v2 && typeof p.final !== 'boolean') fail('predicate.final', 'must be true or false')
      return {
        kind: 'failure',
        repoId,
        commit,
        ref: str(p.ref, 'predicate.ref', 256),
        log: parseLog(p.quorate_log, 'predicate.quorate_log'),
        builderId: str(obj(p.builder, 'predicate.builder').id, 'predicate.builder.id', 512),
        recipeDigest: p.recipeDigest as string,
        exitStatus: p.exitStatus as number | null,
        timedOut: p.timedOut === true,
        reason: str(p.reason, 'predicate.reason', 2000),
        logSha256: isSha256Hex(p.logSha256) ? p.logSha256 : fail('predicate.logSha256', 'must be 64 hex'),
        finishedOn: str(p.finishedOn ?? '', 'predicate.finishedOn', 64),
        attempt: v2 ? p.attempt as number : 1,
        final: v2 ? p.final as boolean : false
      }
    }
    case REF_OBSERVATION_PREDICATE:
    case REF_OBSERVATION_PREDICATE_V1: {
      const v2 = s.predicateType === REF_OBSERVATION_PREDICATE
      const { repoId, commit } = parseCommitSubject(s, 'gitCommit')
      if (p.repository !== repoId || p.commit !== commit) fail('predicate', 'repository and commit must match subject[0]')
      const ref = str(p.ref, 'predicate.ref', 256)
      if (!ref.startsWith('refs/')) fail('predicate.ref', 'must be a full ref name such as refs/heads/main')
      let previous: string | null = null
      let fastForward = false
      let introduced = [commit]
      let truncated = false
      if (v2) {
        if (p.previous !== null && !isCommitSha(p.previous)) fail('predicate.previous', 'must be a commit id or null')
        if (typeof p.fastForward !== 'boolean' || (p.previous === null && p.fastForward)) fail('predicate.fastForward', 'must be true or false (false when previous is null)')
        if (!Array.isArray(p.introduced) || p.introduced.length > MAX_INTRODUCED || !p.introduced.every(isCommitSha)) fail('predicate.introduced', `must be a list of at most ${MAX_INTRODUCED} commit ids`)
        if (new Set(p.introduced).size !== p.introduced.length) fail('predicate.introduced', 'must not list a commit twice')
        if (p.introduced.length > 0 && p.introduced[0] !== commit) fail('predicate.introduced', 'must start with the observed commit when it lists any (newest first)')
        if (typeof p.truncated !== 'boolean') fail('predicate.truncated', 'must be true or false')
        previous = p.previous as string | null
        fastForward = p.fastForward as boolean
        introduced = p.introduced as string[]
        truncated = p.truncated as boolean
      }
      return {
        kind: 'ref',
        repoId,
        commit,
        ref,
        log: parseLog(p.quorate_log, 'predicate.quorate_log'),
        builderId: str(obj(p.builder, 'predicate.builder').id, 'predicate.builder.id', 512),
        observedOn: str(p.observedOn ?? '', 'predicate.observedOn', 64),
        previous,
        fastForward,
        introduced,
        truncated
      }
    }
    default:
      fail('predicateType', `unknown predicate type ${JSON.stringify(String(s.predicateType).slice(0, 100))}`)
  }
}
