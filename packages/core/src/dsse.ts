import { QuorateError } from './errors.js'
import { sha256Hex } from './hash.js'
import { signEd25519, verifyEd25519 } from './keys.js'

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json'

export interface Envelope {
  payloadType: string
  payload: string
  signatures: Array<{ keyid: string, sig: string }>
}

/** An envelope after strict parsing, with its decoded payload and id. */
export interface ParsedEnvelope {
  envelope: Envelope
  payloadBytes: Uint8Array
  signature: Uint8Array
  keyid: string
  /** SHA-256 of the PAE bytes (DESIGN.md): stable however relays re-encode the JSON. */
  id: string
  pae: Uint8Array
}

const encoder = new TextEncoder()

/** DSSE pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body. */
export function preAuthEncoding (payloadType: string, payload: Uint8Array): Uint8Array {
  const typeBytes = encoder.encode(payloadType)
  const head = encoder.encode(`DSSEv1 ${typeBytes.length} ${payloadType} ${payload.length} `)
  const out = new Uint8Array(head.length + payload.length)
  out.set(head, 0)
  out.set(payload, head.length)
  return out
}

export function envelopeIdOf (payloadType: string, payload: Uint8Array): string {
  return sha256Hex(preAuthEncoding(payloadType, payload))
}

export function signEnvelope (payload: Uint8Array, payloadType: string, secretKey: Uint8Array, keyid: string): Envelope {
  const sig = signEd25519(preAuthEncoding(payloadType, payload), secretKey)
  return {
    payloadType,
    payload: Buffer.from(payload).toString('base64'),
    signatures: [{ keyid, sig: Buffer.from(sig).toString('base64') }]
  }
}

/**
 * Strict base64: canonical alphabet and padding, and re-encoding gives the same text. Node's
 * decoder skips characters outside the alphabet and accepts the URL alphabet and missing padding,
 * but its encoder writes only canonical, padded base64: a text equal to the re-encoding of what
 * it decodes to is strict (a separate pattern check would only repeat this, at a cost per envelope).
 */
export function decodeBase64Strict (s: unknown, what: string): Uint8Array {
  if (typeof s !== 'string') throw new QuorateError('ENVELOPE_MALFORMED', `${what}: not strict base64`)
  const bytes = Buffer.from(s, 'base64')
  if (bytes.toString('base64') !== s) throw new QuorateError('ENVELOPE_MALFORMED', `${what}: not strict base64 (non-canonical alphabet, padding or trailing bits)`)
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** Validates the shape of an untrusted envelope object. Does not check the signature. */
export function parseEnvelope (raw: unknown): ParsedEnvelope {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new QuorateError('ENVELOPE_MALFORMED', 'envelope: must be a JSON object')
  const e = raw as Record<string, unknown>
  for (const k of Object.keys(e)) {
    if (k !== 'payloadType' && k !== 'payload' && k !== 'signatures') throw new QuorateError('ENVELOPE_MALFORMED', `envelope: unexpected field "${k}"`)
  }
  if (e.payloadType !== IN_TOTO_PAYLOAD_TYPE) throw new QuorateError('ENVELOPE_MALFORMED', `envelope.payloadType: must be "${IN_TOTO_PAYLOAD_TYPE}"`)
  const payloadBytes = decodeBase64Strict(e.payload, 'envelope.payload')
  if (!Array.isArray(e.signatures) || e.signatures.length !== 1) throw new QuorateError('ENVELOPE_MALFORMED', 'envelope.signatures: must hold exactly one signature')
  const s = e.signatures[0] as Record<string, unknown>
  if (s === null || typeof s !== 'object' || typeof s.keyid !== 'string' || !/^[0-9a-f]{64}$/.test(s.keyid)) {
    throw new QuorateError('ENVELOPE_MALFORMED', 'envelope.signatures[0].keyid: must be a 64-hex keyid')
  }
  for (const k of Object.keys(s)) {
    if (k !== 'keyid' && k !== 'sig') throw new QuorateError('ENVELOPE_MALFORMED', `envelope.signatures[0]: unexpected field "${k}"`)
  }
  const signature = decodeBase64Strict(s.sig, 'envelope.signatures[0].sig')
  if (signature.length !== 64) throw new QuorateError('ENVELOPE_MALFORMED', 'envelope.signatures[0].sig: an Ed25519 signature is 64 bytes')
  const pae = preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, payloadBytes)
  return {
    envelope: { payloadType: IN_TOTO_PAYLOAD_TYPE, payload: e.payload as string, signatures: [{ keyid: s.keyid, sig: s.sig as string }] },
    payloadBytes,
    signature,
    keyid: s.keyid,
    id: sha256Hex(pae),
    pae
  }
}

export function verifyEnvelopeSignature (parsed: ParsedEnvelope, publicKey: Uint8Array): boolean {
  return verifyEd25519(publicKey, parsed.pae, parsed.signature)
}
