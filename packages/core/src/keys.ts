import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import * as ed from '@noble/ed25519'
import { sha512 } from '@noble/hashes/sha2.js'
import { canonicalize } from './canonical-json.js'
import { QuorateError } from './errors.js'
import { bytesToHex, hexToBytes, sha256Hex } from './hash.js'

ed.hashes.sha512 = sha512

export interface BuilderKeyPair {
  /** 32-byte RFC 8032 secret seed. */
  secretKey: Uint8Array
  publicKey: Uint8Array
  publicKeyHex: string
  keyid: string
}

/** Derives a key pair from a 32-byte seed (the caller supplies randomness: core has no RNG). */
export function keyPairFromSeed (seed: Uint8Array): BuilderKeyPair {
  if (seed.length !== 32) throw new QuorateError('KEY_INVALID', `an Ed25519 secret key is 32 bytes, got ${seed.length}`)
  const publicKey = ed.getPublicKey(seed)
  const publicKeyHex = bytesToHex(publicKey)
  return { secretKey: seed, publicKey, publicKeyHex, keyid: keyidOf(publicKeyHex) }
}

/** in-toto/TUF keyid: SHA-256 of the canonical JSON key description. */
export function keyidOf (publicKeyHex: string): string {
  return sha256Hex(canonicalize({ keytype: 'ed25519', scheme: 'ed25519', keyval: { public: publicKeyHex } }))
}

export function signEd25519 (message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return ed.sign(message, secretKey)
}

/**
 * Validates a public key from a policy: 64 lowercase hex, a valid curve point, not of small order.
 * Returns the raw bytes. `where` names the field for the error message.
 */
export function parsePublicKey (hex: unknown, where: string): Uint8Array {
  const bytes = typeof hex === 'string' ? hexToBytes(hex) : undefined
  if (bytes === undefined || bytes.length !== 32) {
    throw new QuorateError('KEY_INVALID', `${where}: an Ed25519 public key is 64 lowercase hex characters (as printed by "quorate init")`)
  }
  let point
  try {
    point = ed.Point.fromBytes(bytes)
  } catch {
    throw new QuorateError('KEY_INVALID', `${where}: ${String(hex)} is not a point on the Ed25519 curve; copy the key again from "quorate init"`)
  }
  if (point.isSmallOrder()) {
    throw new QuorateError('KEY_INVALID', `${where}: ${String(hex)} is a small-order key that can sign for anything; remove it`)
  }
  return bytes
}

const keyObjects = new Map<string, KeyObject>()

function keyObjectFor (publicKey: Uint8Array): KeyObject {
  const hex = bytesToHex(publicKey)
  let ko = keyObjects.get(hex)
  if (ko === undefined) {
    ko = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') }, format: 'jwk' })
    if (keyObjects.size > 10_000) keyObjects.clear()
    keyObjects.set(hex, ko)
  }
  return ko
}

/**
 * THE signature check behind every decision (DESIGN.md): OpenSSL's RFC 8032 Ed25519 through
 * node:crypto, never noble's permissive ZIP-215 verify, so all honest nodes agree on every
 * signature, crafted ones included.
 */
export function verifyEd25519 (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false
  try {
    return cryptoVerify(null, message, keyObjectFor(publicKey), signature)
  } catch {
    return false
  }
}

/** The builder key file (mode 0600), as written by `quorate init`. */
export interface BuilderKeyFile {
  type: 'quorate-builder-key'
  version: 1
  keytype: 'ed25519'
  publicKey: string
  secretKey: string
  keyid: string
}

export function encodeBuilderKeyFile (kp: BuilderKeyPair): BuilderKeyFile {
  return { type: 'quorate-builder-key', version: 1, keytype: 'ed25519', publicKey: kp.publicKeyHex, secretKey: bytesToHex(kp.secretKey), keyid: kp.keyid }
}

export function parseBuilderKeyFile (raw: unknown, where: string): BuilderKeyPair {
  const r = raw as Partial<BuilderKeyFile> | null
  if (r === null || typeof r !== 'object' || r.type !== 'quorate-builder-key' || r.keytype !== 'ed25519') {
    throw new QuorateError('KEY_INVALID', `${where}: not a Quorate builder key file; create one with "quorate init"`)
  }
  const seed = typeof r.secretKey === 'string' ? hexToBytes(r.secretKey) : undefined
  if (seed === undefined || seed.length !== 32) throw new QuorateError('KEY_INVALID', `${where}: secretKey must be 64 hex characters`)
  const kp = keyPairFromSeed(seed)
  if (r.publicKey !== kp.publicKeyHex) throw new QuorateError('KEY_INVALID', `${where}: publicKey does not match secretKey; the file was edited or damaged, restore it from backup`)
  return kp
}
