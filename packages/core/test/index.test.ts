import { describe, it, expect } from 'vitest'
import * as core from '../src/index.js'

describe('@quorate/core', () => {
  it('exports exactly its public API', () => {
    expect(Object.keys(core).sort()).toEqual([
      'ALLOWED_GIT_SCHEMES', 'ALLOWED_GIT_URL_FORMS', 'BUILD_TYPE', 'DEFAULT_MAX_BUCKET_KEYS', 'DEFAULT_RECIPE_LIMITS',
      'ENVELOPE_CHECK_CODES', 'FAILURE_PREDICATE', 'FAILURE_PREDICATE_V1', 'IN_TOTO_PAYLOAD_TYPE', 'MAX_ENVELOPE_BYTES',
      'MAX_INTRODUCED', 'NO_RECIPE_DIGEST', 'OCI_MANIFEST_MEDIA_TYPE', 'PROVENANCE_PREDICATE', 'QuorateError',
      'REF_OBSERVATION_PREDICATE', 'REF_OBSERVATION_PREDICATE_V1', 'REPO_ID', 'STATEMENT_TYPE', 'TokenBuckets',
      'UNSAFE_DISPLAY_CHAR', 'bytesToHex', 'canonicalBytes', 'canonicalize', 'checkEnvelope', 'checkEquivocationProof',
      'checkGitUrl', 'collectRefMoves', 'currentChain', 'decideQuorum', 'decisionNotice', 'decodeBase64Strict', 'diffFileLists',
      'encodeBuilderKeyFile', 'envelopeIdOf', 'escapeForDisplay', 'escapeJsonText', 'escapeMarkdown', 'gitDependencyUri',
      'gitUrlProblem', 'hasUnsafeDisplayChars', 'hexToBytes', 'isCommitSha', 'isQuorateError', 'isRepoId', 'isSha256Hex',
      'keyPairFromSeed', 'keyidOf', 'latestTrustedCommit', 'makeFailureStatement', 'makeProvenanceStatement',
      'makeRefObservationStatement', 'memoOf', 'orderByTopology', 'orgChains', 'parseAttestation', 'parseBuilderKeyFile',
      'parseEnvelope', 'parseImageSpec', 'parseJsonStrict', 'parsePolicy', 'parsePublicKey', 'parseRecipeSpec', 'parseRootImage',
      'policyDigestOf', 'preAuthEncoding', 'precheckEnvelope', 'recipeDigestOf', 'redactUrl', 'refChainCandidates', 'refObservers',
      'resultDigestOf', 'rootRegistriesOf', 'sha256Hex', 'signEd25519', 'signEnvelope', 'signStatement', 'signatureChecked', 'statementBytes',
      'stringifyForDisplay', 'verifyEd25519', 'verifyEnvelopeSignature'
    ])
  })

  it('gives every refusal of checkEnvelope a code from ENVELOPE_CHECK_CODES', async () => {
    const { checkEnvelope, ENVELOPE_CHECK_CODES, parsePolicy } = core
    const policy = parsePolicy({ version: 1, builders: [{ name: 'a', org: 'a', keys: [{ publicKey: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a' }] }], repositories: [{ id: 'hello', url: '/srv/hello.git', branches: ['main'], recipe: { build: ['true'], output: 'out', outputKind: 'dir' } }], quorum: {} }, 'p.json')
    const refused = checkEnvelope('{"payloadType":1}', policy)
    expect(refused.verdict).toBe('reject')
    expect(refused.verdict !== 'accept' && refused.code).toBe('malformed')
    const big = checkEnvelope('x'.repeat(70_000), policy)
    expect(big.verdict !== 'accept' && big.code).toBe('oversized')
    expect(ENVELOPE_CHECK_CODES).toEqual(['oversized', 'malformed', 'topic-mismatch', 'unknown-repository', 'unknown-key', 'revoked-key', 'bad-signature'])
  })
})
