/**
 * `quorate key show` and `quorate key generate`: a builder's (or a pipeline's) Ed25519 public
 * key in the forms standard tools read (PEM SubjectPublicKeyInfo for OpenSSL, cosign,
 * securesystemslib and node:crypto), and a fresh key file for signing verification summaries.
 */
import { existsSync, writeFileSync, chmodSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { QuorateError, encodeBuilderKeyFile, keyPairFromSeed, keyidOf, parsePublicKey, type BuilderKeyPair } from '@quorate/core'

/** DER header of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 } BIT STRING (32 bytes) }. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/** The PEM (SPKI, "-----BEGIN PUBLIC KEY-----") of a 64-hex Ed25519 public key. */
export function publicKeyPem (publicKeyHex: string): string {
  const raw = parsePublicKey(publicKeyHex, 'public key')
  const b64 = Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(raw)]).toString('base64')
  return `-----BEGIN PUBLIC KEY-----\n${b64.match(/.{1,64}/g)!.join('\n')}\n-----END PUBLIC KEY-----\n`
}

export interface KeyCommandIo { print: (s: string) => void, usage: (msg: string) => never }

async function loadKey (values: { config?: string, key?: string }, usage: (msg: string) => never): Promise<{ key: BuilderKeyPair, from: string }> {
  if ((values.config === undefined) === (values.key === undefined)) usage('key show needs --config FILE (the node\'s config) or --key FILE (a key file), one of them')
  const { loadNodeConfig, loadBuilderKey } = await import('@quorate/node/config')
  const file = values.key ?? loadNodeConfig(values.config!).builderKeyFile
  return { key: loadBuilderKey(file), from: file }
}

/** `quorate key show [--pem | --json] (--config FILE | --key FILE | --public HEX)`. */
export async function keyShow (args: string[], io: KeyCommandIo): Promise<number> {
  const { values } = parseArgs({ args, options: { pem: { type: 'boolean' }, json: { type: 'boolean' }, config: { type: 'string' }, key: { type: 'string' }, public: { type: 'string' } } })
  let publicKeyHex: string
  let keyid: string
  if (values.public !== undefined) {
    if (values.config !== undefined || values.key !== undefined) io.usage('give one of --config, --key or --public')
    parsePublicKey(values.public, '--public')
    publicKeyHex = values.public
    keyid = keyidOf(publicKeyHex)
  } else {
    const { key } = await loadKey(values, io.usage)
    publicKeyHex = key.publicKeyHex
    keyid = key.keyid
  }
  if (values.pem === true) { io.print(publicKeyPem(publicKeyHex).trimEnd()); return 0 }
  if (values.json === true) { io.print(JSON.stringify({ keytype: 'ed25519', scheme: 'ed25519', keyval: { public: publicKeyHex }, keyid }, null, 2)); return 0 }
  io.print(`public key: ${publicKeyHex}`)
  io.print(`keyid:      ${keyid}`)
  return 0
}

/** `quorate key generate --out FILE [--force]`: a new Ed25519 key file (mode 0600), e.g. a pipeline's VSA signing key. */
export async function keyGenerate (args: string[], io: KeyCommandIo): Promise<number> {
  const { values } = parseArgs({ args, options: { out: { type: 'string' }, force: { type: 'boolean' } } })
  if (values.out === undefined) io.usage('key generate needs --out FILE')
  if (existsSync(values.out) && values.force !== true) throw new QuorateError('USAGE', `${values.out} already exists; keep it, or pass --force to replace it deliberately`)
  const kp = keyPairFromSeed(new Uint8Array(randomBytes(32)))
  writeFileSync(values.out, JSON.stringify(encodeBuilderKeyFile(kp), null, 2) + '\n', { mode: 0o600 })
  chmodSync(values.out, 0o600)
  io.print(`wrote ${values.out} (mode 0600: keep it secret)`)
  io.print(`public key: ${kp.publicKeyHex}`)
  io.print(`keyid:      ${kp.keyid}`)
  io.print(`PEM for verifiers: quorate key show --pem --key ${values.out}`)
  return 0
}
