import { parseJsonStrict } from './canonical-json.js'
import { parseEnvelope, verifyEnvelopeSignature, type Envelope, type ParsedEnvelope } from './dsse.js'
import { isQuorateError } from './errors.js'
import type { KeyInfo, Policy } from './policy.js'
import { parseAttestation, type Attestation } from './statement.js'

/** Gossip verdicts (DESIGN.md): reject punishes the sender, ignore does not. */
export type Verdict = 'accept' | 'reject' | 'ignore'

export interface VerifiedAttestation {
  /** Envelope id: SHA-256 of the PAE bytes. */
  id: string
  keyid: string
  builder: string
  org: string
  envelope: Envelope
  attestation: Attestation
}

/**
 * Why an envelope was refused, as a code that metrics and the API use (the prose in `reason`
 * is for people and may change). Rejects punish the sender; ignores do not.
 */
export type EnvelopeCheckCode =
  /** reject: larger than the size cap. */
  | 'oversized'
  /** reject: not UTF-8 JSON, not a DSSE envelope, or not a statement of ours. */
  | 'malformed'
  /** reject: the statement names another repository than the topic it came on. */
  | 'topic-mismatch'
  /** ignore: the repository is not in this policy. */
  | 'unknown-repository'
  /** ignore: the key is not in this policy (an honest relay may run a newer one). */
  | 'unknown-key'
  /** ignore: the key is revoked in this policy. */
  | 'revoked-key'
  /** reject: the signature does not verify under the key. */
  | 'bad-signature'

export const ENVELOPE_CHECK_CODES: readonly EnvelopeCheckCode[] = ['oversized', 'malformed', 'topic-mismatch', 'unknown-repository', 'unknown-key', 'revoked-key', 'bad-signature']

export type EnvelopeCheck =
  | { verdict: 'accept', verified: VerifiedAttestation }
  /** `code` is what went wrong, `reason` says it in words (with the offending value). */
  | { verdict: 'reject' | 'ignore', code: EnvelopeCheckCode, reason: string, id?: string, keyid?: string }

export const MAX_ENVELOPE_BYTES = 64 * 1024

export interface CheckOptions {
  /** The repository whose topic the envelope arrived on; a mismatch is a reject. */
  repoId?: string
  maxBytes?: number
  /** Envelope ids already verified against this policy: skips the signature check (a cache, never a source of trust). */
  verifiedIds?: { has: (id: string) => boolean }
}

const decoder = new TextDecoder('utf-8', { fatal: true })

/**
 * What `precheckEnvelope` found: a refusal, or an envelope that passed every check but its
 * signature, with what the signature check needs (`verifySignatureOf`) and what it then proves.
 */
export type EnvelopePrecheck =
  | { verdict: 'reject' | 'ignore', code: EnvelopeCheckCode, reason: string, id?: string, keyid?: string }
  | { verdict: 'signature', parsed: ParsedEnvelope, key: KeyInfo, verified: VerifiedAttestation }

/**
 * Every check of `checkEnvelope` but the signature, in the same cost order (size, parse, topic,
 * known key): so a caller can verify signatures elsewhere (on worker threads) with the same
 * function (`verifyEd25519`, through `signatureChecked`) and the same verdicts.
 */
export function precheckEnvelope (input: Uint8Array | string | object, policy: Policy, opts: Omit<CheckOptions, 'verifiedIds'> = {}): EnvelopePrecheck {
  const maxBytes = opts.maxBytes ?? MAX_ENVELOPE_BYTES
  let raw: unknown = input
  try {
    if (input instanceof Uint8Array || typeof input === 'string') {
      const size = typeof input === 'string' ? Buffer.byteLength(input) : input.byteLength
      if (size > maxBytes) return { verdict: 'reject', code: 'oversized', reason: `oversized: ${size} bytes > ${maxBytes}` }
      const text = typeof input === 'string' ? input : decoder.decode(input)
      raw = parseJsonStrict(text, 'envelope')
    }
    const parsed = parseEnvelope(raw)
    const attestation = parseAttestation(parsed.payloadBytes)
    if (opts.repoId !== undefined && attestation.repoId !== opts.repoId) {
      return { verdict: 'reject', code: 'topic-mismatch', reason: `topic mismatch: envelope is for repository "${attestation.repoId}"`, id: parsed.id, keyid: parsed.keyid }
    }
    if (!policy.repositories.has(attestation.repoId)) {
      return { verdict: 'ignore', code: 'unknown-repository', reason: 'repository not in this policy', id: parsed.id, keyid: parsed.keyid }
    }
    const key: KeyInfo | undefined = policy.keys.get(parsed.keyid)
    if (key === undefined) return { verdict: 'ignore', code: 'unknown-key', reason: 'unknown key: not in the network policy', id: parsed.id, keyid: parsed.keyid }
    if (key.revoked) return { verdict: 'ignore', code: 'revoked-key', reason: `revoked key of builder "${key.builder}"`, id: parsed.id, keyid: parsed.keyid }
    return { verdict: 'signature', parsed, key, verified: { id: parsed.id, keyid: parsed.keyid, builder: key.builder, org: key.org, envelope: parsed.envelope, attestation } }
  } catch (err) {
    if (isQuorateError(err) || err instanceof TypeError) return { verdict: 'reject', code: 'malformed', reason: `malformed: ${(err as Error).message}` }
    throw err
  }
}

/** The verdict of a prechecked envelope once its signature was checked (`valid`: what `verifyEd25519` said). */
export function signatureChecked (pre: Extract<EnvelopePrecheck, { verdict: 'signature' }>, valid: boolean): EnvelopeCheck {
  if (!valid) {
    const { parsed, key } = pre
    return { verdict: 'reject', code: 'bad-signature', reason: `bad signature: does not verify under the key of builder "${key.builder}"`, id: parsed.id, keyid: parsed.keyid }
  }
  return { verdict: 'accept', verified: pre.verified }
}

/**
 * Checks one untrusted envelope against the policy in cost order: size, parse, topic,
 * known key, then signature. Bytes, JSON text or an already-parsed object are accepted.
 */
export function checkEnvelope (input: Uint8Array | string | object, policy: Policy, opts: CheckOptions = {}): EnvelopeCheck {
  const pre = precheckEnvelope(input, policy, opts)
  if (pre.verdict !== 'signature') return pre
  return signatureChecked(pre, opts.verifiedIds?.has(pre.parsed.id) === true || verifyEnvelopeSignature(pre.parsed, pre.key.publicKey))
}
