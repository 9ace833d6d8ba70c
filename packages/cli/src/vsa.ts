/**
 * The signed verification summary a pipeline leaves behind (`quorate verify --vsa-key KEY
 * --vsa-out FILE`): a SLSA Verification Summary Attestation v1 in an in-toto Statement v1, in a
 * DSSE envelope signed by the pipeline's own Ed25519 key. A policy engine (Kyverno, OPA/Conftest)
 * then needs only that key to trust "the quorum built this output", not Quorate itself.
 */
import { writeFileSync } from 'node:fs'
import { gitDependencyUri, signStatement, STATEMENT_TYPE, type BuilderKeyPair, type Policy, type SignedAttestation, type Subject } from '@quorate/core'
import type { VerifyReport } from './verify.js'

export const VSA_PREDICATE = 'https://slsa.dev/verification_summary/v1'
export const QUORATE_VERIFIER_ID = 'https://quorate.dev/verifier/quorate-verify/v1'
/** The verified "level" of a PASSED summary: custom values must not start with SLSA_. */
export const QUORUM_LEVEL = 'QUORATE_QUORUM_REPRODUCED'

export interface VsaInput {
  report: VerifyReport
  policy: Policy
  /** When the decision was made (ISO 8601): the caller's clock. */
  timeVerified: string
  /** The quorate version that verified. */
  version: string
  /** Where the input envelopes came from: node URLs or the bundle file. */
  sources: string[]
}

/** The VSA statement for one verify report (PASSED only when the gate passed: exit 0). */
export function makeVsaStatement (i: VsaInput): Record<string, unknown> {
  const r = i.report
  const d = r.decision
  const passed = r.exitCode === 0 && d?.trusted !== undefined
  // The trusted output: narSha256 of the tree, then the top-level files and OCI images the supporters signed.
  const subject: Subject[] = passed
    ? d.trusted!.subjects.map(s => ({ name: s.name, digest: { ...s.digest }, ...(s.mediaType !== undefined ? { mediaType: s.mediaType } : {}) }))
    : [{ name: `${r.repoId}@${r.commit}`, digest: { gitCommit: r.commit } }]
  const repo = i.policy.repositories.get(r.repoId)
  return {
    _type: STATEMENT_TYPE,
    subject,
    predicateType: VSA_PREDICATE,
    predicate: {
      verifier: { id: QUORATE_VERIFIER_ID, version: { quorate: i.version } },
      timeVerified: i.timeVerified,
      resourceUri: repo !== undefined ? gitDependencyUri(repo.url, r.commit) : `git+${r.repoId}@${r.commit}`,
      policy: { digest: { sha256: i.policy.digest } },
      // DSSE envelope id = SHA-256 of the envelope's PAE bytes: stable however the JSON is re-encoded.
      inputAttestations: (d?.envelopeIds ?? []).map(id => ({ digest: { dssePaeSha256: id } })),
      verificationResult: passed ? 'PASSED' : 'FAILED',
      verifiedLevels: passed ? [QUORUM_LEVEL] : [],
      slsaVersion: '1.0',
      quorate_decision: {
        status: r.status,
        exitCode: r.exitCode,
        threshold: d?.threshold ?? null,
        organizations: d?.organizations ?? null,
        supportingOrgs: d?.trusted?.supportingOrgs ?? [],
        sources: i.sources,
        ...(r.refObservedBy !== undefined ? { refObservedBy: r.refObservedBy } : {})
      }
    }
  }
}

/** Signs the summary with the pipeline's key and writes the envelope as one JSON line (also a valid .intoto.jsonl). */
export function writeVsa (file: string, input: VsaInput, key: BuilderKeyPair): SignedAttestation {
  const signed = signStatement(makeVsaStatement(input), key)
  writeFileSync(file, JSON.stringify(signed.envelope) + '\n')
  return signed
}
