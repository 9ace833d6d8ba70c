import { canonicalBytes } from './canonical-json.js'
import { envelopeIdOf, IN_TOTO_PAYLOAD_TYPE, signEnvelope, type Envelope } from './dsse.js'
import type { BuilderKeyPair } from './keys.js'

export interface SignedAttestation {
  envelope: Envelope
  /** Envelope id (SHA-256 of the PAE). */
  id: string
  /** The envelope as compact JSON bytes, ready to store and gossip. */
  bytes: Uint8Array
}

const encoder = new TextEncoder()

/** Signs an in-toto statement (written as canonical JSON) into a DSSE envelope. */
export function signStatement (statement: Record<string, unknown>, key: BuilderKeyPair): SignedAttestation {
  const payload = canonicalBytes(statement)
  const envelope = signEnvelope(payload, IN_TOTO_PAYLOAD_TYPE, key.secretKey, key.keyid)
  return { envelope, id: envelopeIdOf(IN_TOTO_PAYLOAD_TYPE, payload), bytes: encoder.encode(JSON.stringify(envelope)) }
}
