import { describe, it, expect } from 'vitest'
import * as ed from '@noble/ed25519'
import { dsse } from '@sigstore/core'
import {
  keyPairFromSeed, keyidOf, signEd25519, verifyEd25519, parsePublicKey, preAuthEncoding, signEnvelope,
  parseEnvelope, verifyEnvelopeSignature, envelopeIdOf, IN_TOTO_PAYLOAD_TYPE, hexToBytes, canonicalize,
  parseJsonStrict, decodeBase64Strict, sha256Hex, isQuorateError
} from '../src/index.js'

const hex = (s: string): Uint8Array => hexToBytes(s)!

// RFC 8032 section 7.1 test vectors.
const RFC8032 = [
  {
    secret: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    public: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    message: '',
    sig: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'
  },
  {
    secret: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
    public: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    message: 'af82',
    sig: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a'
  }
]

describe('Ed25519 keys and signatures', () => {
  it('matches the RFC 8032 test vectors for key derivation, signing and verification', () => {
    for (const v of RFC8032) {
      const kp = keyPairFromSeed(hex(v.secret))
      expect(kp.publicKeyHex).toBe(v.public)
      const sig = signEd25519(hex(v.message), kp.secretKey)
      expect(Buffer.from(sig).toString('hex')).toBe(v.sig)
      expect(verifyEd25519(kp.publicKey, hex(v.message), sig)).toBe(true)
    }
  })

  it('computes the in-toto keyid that DESIGN.md gives for RFC 8032 test key 1', () => {
    expect(keyidOf(RFC8032[0].public)).toBe('74c181c7ad8a0855d4b55e44d2ba87aabdddb196832571f15f92fece332e4916')
  })

  it('rejects tampered messages, tampered signatures, wrong keys and wrong lengths', () => {
    const v = RFC8032[1]
    const pub = hex(v.public)
    const sig = hex(v.sig)
    expect(verifyEd25519(pub, hex('af83'), sig)).toBe(false)
    const bad = new Uint8Array(sig); bad[5] ^= 1
    expect(verifyEd25519(pub, hex(v.message), bad)).toBe(false)
    expect(verifyEd25519(hex(RFC8032[0].public), hex(v.message), sig)).toBe(false)
    expect(verifyEd25519(pub, hex(v.message), sig.slice(0, 63))).toBe(false)
  })

  it('agrees with noble on honest signatures but rejects a non-canonical S that is never valid under RFC 8032', () => {
    const kp = keyPairFromSeed(new Uint8Array(32).fill(7))
    const msg = new TextEncoder().encode('quorate')
    const sig = signEd25519(msg, kp.secretKey)
    expect(verifyEd25519(kp.publicKey, msg, sig)).toBe(ed.verify(sig, msg, kp.publicKey))
    // S + L: same point arithmetic, non-canonical scalar. RFC 8032 requires S < L.
    const L = 2n ** 252n + 27742317777372353535851937790883648493n
    const s = BigInt('0x' + Buffer.from(sig.slice(32)).reverse().toString('hex')) + L
    const sBytes = Buffer.from(s.toString(16).padStart(64, '0'), 'hex').reverse()
    const malleated = new Uint8Array([...sig.slice(0, 32), ...sBytes])
    expect(verifyEd25519(kp.publicKey, msg, malleated)).toBe(false)
  })

  it('refuses small-order and malformed public keys when a policy loads them', () => {
    const identity = '01' + '00'.repeat(31)
    expect(() => parsePublicKey(identity, 'k')).toThrow(/small-order/)
    expect(() => parsePublicKey('zz', 'k')).toThrow(/64 lowercase hex/)
    expect(() => parsePublicKey(RFC8032[0].public.toUpperCase(), 'k')).toThrow(/64 lowercase hex/)
    expect(parsePublicKey(RFC8032[0].public, 'k')).toHaveLength(32)
  })
})

describe('DSSE', () => {
  it('builds the PAE exactly as the DSSE spec example and @sigstore/core do', () => {
    const body = new TextEncoder().encode('hello world')
    const pae = preAuthEncoding('http://example.com/HelloWorld', body)
    expect(Buffer.from(pae).toString()).toBe('DSSEv1 29 http://example.com/HelloWorld 11 hello world')
    const payload = new TextEncoder().encode('{"a":"ü"}')
    expect(Buffer.from(preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, payload))).toEqual(dsse.preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, Buffer.from(payload)))
  })

  it('signs and verifies an envelope; the id is the SHA-256 of the PAE and survives re-encoding', () => {
    const kp = keyPairFromSeed(hex(RFC8032[0].secret))
    const payload = new TextEncoder().encode('{"_type":"x"}')
    const env = signEnvelope(payload, IN_TOTO_PAYLOAD_TYPE, kp.secretKey, kp.keyid)
    const parsed = parseEnvelope(JSON.parse(JSON.stringify(env)))
    expect(parsed.id).toBe(sha256Hex(preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, payload)))
    expect(parsed.id).toBe(envelopeIdOf(IN_TOTO_PAYLOAD_TYPE, payload))
    expect(verifyEnvelopeSignature(parsed, kp.publicKey)).toBe(true)
    // Relays may reorder JSON fields: the id does not change.
    const reordered = { signatures: env.signatures, payload: env.payload, payloadType: env.payloadType }
    expect(parseEnvelope(reordered).id).toBe(parsed.id)
  })

  it('refuses malformed envelopes: two signatures, loose base64, extra fields, wrong type', () => {
    const kp = keyPairFromSeed(hex(RFC8032[0].secret))
    const env = signEnvelope(new Uint8Array([1, 2, 3]), IN_TOTO_PAYLOAD_TYPE, kp.secretKey, kp.keyid)
    expect(() => parseEnvelope({ ...env, signatures: [env.signatures[0], env.signatures[0]] })).toThrow(/exactly one signature/)
    expect(() => parseEnvelope({ ...env, payload: 'AQID' + '\n' })).toThrow(/base64/)
    expect(() => parseEnvelope({ ...env, payload: 'AQI' })).toThrow(/base64/)
    expect(() => parseEnvelope({ ...env, extra: 1 })).toThrow(/unexpected field/)
    expect(() => parseEnvelope({ ...env, payloadType: 'text/plain' })).toThrow(/payloadType/)
    expect(() => decodeBase64Strict('AQJ=', 'x')).toThrow(/non-canonical/)
  })
})

describe('canonical JSON (RFC 8785)', () => {
  it('sorts keys by UTF-16 code units and writes numbers and strings as JCS does', () => {
    expect(canonicalize({ b: 1, a: [true, null, 'x'], c: { z: 1e21, y: 0.1, x: -0 } })).toBe('{"a":[true,null,"x"],"b":1,"c":{"x":0,"y":0.1,"z":1e+21}}')
    // RFC 8785 section 3.2.3 sorting example: keys sorted by UTF-16 units.
    expect(canonicalize({ '\u20ac': 1, '\r': 2, '\ud83d\ude00': 3, '\u0080': 4, '1': 5, '\u00f6': 6 }))
      .toBe('{"\\r":2,"1":5,"\u0080":4,"\u00f6":6,"\u20ac":1,"\ud83d\ude00":3}')
    expect(canonicalize({ s: '\u2028\u0001"\\' })).toBe('{"s":"\u2028\\u0001\\"\\\\"}')
    expect(canonicalize({ a: undefined, b: 1 })).toBe('{"b":1}')
    expect(() => canonicalize({ n: Number.NaN })).toThrow(/cannot be written/)
  })

  it('refuses lone surrogates in strings and keys, as the reference canonicalize does', () => {
    for (const bad of ['\ud800', 'a\udc00b', '\ude00\ud83d', 'x\ud83d']) {
      try { canonicalize({ s: bad }); expect.fail('should throw') } catch (err) {
        expect(isQuorateError(err, 'CANONICAL_JSON')).toBe(true)
        expect((err as Error).message).toMatch(/\$\.s: .*lone UTF-16 surrogate/)
      }
    }
    expect(() => canonicalize({ [`k\udbff`]: 1 })).toThrow(/key .*lone UTF-16 surrogate/)
    expect(() => canonicalize([['ok', '\udfff']])).toThrow(/\$\[0\]\[1\]/)
    // A parsed payload can carry one through a JSON escape: refused too, never hashed.
    expect(() => canonicalize(JSON.parse('{"recipe":"\\ud800"}'))).toThrow(/lone UTF-16 surrogate/)
    // Surrogate pairs are fine.
    expect(canonicalize({ s: '\ud83d\ude00' })).toBe('{"s":"\ud83d\ude00"}')
  })

  it('refuses JSON text with a duplicate key at any depth', () => {
    expect(() => parseJsonStrict('{"a":1,"a":2}', 'p')).toThrow(/same key twice/)
    expect(() => parseJsonStrict('{"x":{"a":1,"b":{"c":[{"a":1,"a":1}]}}}', 'p')).toThrow(/same key twice/)
    expect(parseJsonStrict('{"a":{"a":1},"b":["a","a"],"c":"a"}', 'p')).toEqual({ a: { a: 1 }, b: ['a', 'a'], c: 'a' })
    try { parseJsonStrict('{', 'p'); expect.fail('should throw') } catch (err) { expect(isQuorateError(err, 'ENVELOPE_MALFORMED')).toBe(true) }
  })
})
