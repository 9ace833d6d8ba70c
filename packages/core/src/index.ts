/**
 * @quorate/core: pure formats and rules (canonical JSON, keys, DSSE, statements, policy,
 * quorum). No fs, no network, no clock: time and randomness come in as parameters.
 *
 * @example
 * import { parsePolicy, decideQuorum } from '@quorate/core'
 * const policy = parsePolicy(JSON.parse(policyText), 'policy.json')
 * const decision = decideQuorum({ policy, repoId: 'hello', commit, envelopes })
 * decision.status // 'trusted' | 'pending' | 'disputed' | 'failed'
 */
export { QuorateError, isQuorateError } from './errors.js'
export type { QuorateErrorCode } from './errors.js'
export { canonicalize, canonicalBytes, parseJsonStrict } from './canonical-json.js'
export { sha256Hex, bytesToHex, hexToBytes, isSha256Hex, isCommitSha } from './hash.js'
export { parseRecipeSpec, parseRootImage, DEFAULT_RECIPE_LIMITS } from './recipe.js'
export type { Recipe, RecipeLimits, RecipeSpec, RecipeRoot, RootImageRef } from './recipe.js'
export { parseImageSpec } from './oci-image-spec.js'
export type { BuildJob, BuildJobState } from './build-job.js'
export type { OciImageSpec, OciImageConfig } from './oci-image-spec.js'
export { keyPairFromSeed, keyidOf, signEd25519, verifyEd25519, parsePublicKey, encodeBuilderKeyFile, parseBuilderKeyFile } from './keys.js'
export type { BuilderKeyPair, BuilderKeyFile } from './keys.js'
export { preAuthEncoding, envelopeIdOf, signEnvelope, parseEnvelope, verifyEnvelopeSignature, decodeBase64Strict, IN_TOTO_PAYLOAD_TYPE } from './dsse.js'
export type { Envelope, ParsedEnvelope } from './dsse.js'
export {
  STATEMENT_TYPE, PROVENANCE_PREDICATE, OCI_MANIFEST_MEDIA_TYPE, NO_RECIPE_DIGEST, FAILURE_PREDICATE, FAILURE_PREDICATE_V1, REF_OBSERVATION_PREDICATE,
  REF_OBSERVATION_PREDICATE_V1, MAX_INTRODUCED, BUILD_TYPE, REPO_ID,
  isRepoId, recipeDigestOf, resultDigestOf, makeProvenanceStatement, makeFailureStatement, makeRefObservationStatement,
  statementBytes, parseAttestation
} from './statement.js'
export type {
  LogPosition, Subject, ProvenanceInput, FailureInput, RefObservationInput,
  Attestation, BuildAttestation, FailureAttestation, RefAttestation
} from './statement.js'
export { parsePolicy, policyDigestOf, rootRegistriesOf } from './policy.js'
export type { Policy, PolicyDocument, PolicyBuilder, PolicyKey, PolicyRepository, RepositoryPolicy, KeyInfo, QuorumMode } from './policy.js'
export { checkEnvelope, precheckEnvelope, signatureChecked, MAX_ENVELOPE_BYTES, ENVELOPE_CHECK_CODES } from './verify.js'
export type { Verdict, VerifiedAttestation, EnvelopeCheck, EnvelopeCheckCode, EnvelopePrecheck, CheckOptions } from './verify.js'
export { decideQuorum, checkEquivocationProof, refObservers } from './quorum.js'
export type { Decision, DecisionStatus, DecideInput, ResultSummary, BuilderVote, Equivocation, FailureEntry, RefObservationEntry, IgnoredCode } from './quorum.js'
export { decisionNotice, memoOf } from './decision-notice.js'
export type { DecisionNotice, DecisionMemo } from './decision-notice.js'
export { collectRefMoves, currentChain, orgChains, orderByTopology, refChainCandidates, latestTrustedCommit } from './ref-chains.js'
export type { RefMove, CollectRefMovesOptions } from './ref-chains.js'
export { signStatement } from './sign.js'
export type { SignedAttestation } from './sign.js'
export { diffFileLists } from './file-list-diff.js'
export { TokenBuckets, DEFAULT_MAX_BUCKET_KEYS } from './token-bucket.js'
export type { TokenBucketOptions } from './token-bucket.js'
export type { FileListDiff, FileChange, FileListEntry } from './file-list-diff.js'
export { escapeForDisplay, escapeJsonText, stringifyForDisplay, escapeMarkdown, hasUnsafeDisplayChars, UNSAFE_DISPLAY_CHAR } from './display-escape.js'
export type { DisplayEscapeOptions } from './display-escape.js'
export { checkGitUrl, gitUrlProblem, redactUrl, gitDependencyUri, ALLOWED_GIT_SCHEMES, ALLOWED_GIT_URL_FORMS } from './git-url.js'
