// Quorate's envelopes checked by tools that know nothing of Quorate: OpenSSL (Debian's
// `openssl pkeyutl -rawin`) and @sigstore/core's DSSE helpers, from the PEM key that
// `quorate key show --pem` prints (issue 13, "Fields standard tools expect").
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { crypto as sigstoreCrypto, dsse as sigstoreDsse } from '@sigstore/core'
import { encodeBuilderKeyFile } from '@quorate/core'
import { runCli } from '../../../scripts/devnet.js'
import { builder, buildEnvelope } from '../../core/test/fixtures.js'

let dir: string
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'quorate-standard-tools-')) })
afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

const alice = builder('alice-1', 'alpha', 7)

function writeKeyFile (name: string): string {
  const file = join(dir, name)
  writeFileSync(file, JSON.stringify(encodeBuilderKeyFile(alice.key)), { mode: 0o600 })
  return file
}

describe('quorate key show --pem', () => {
  it('prints an SPKI PEM that OpenSSL reads as the same Ed25519 key', async () => {
    const keyFile = writeKeyFile('alice-key.json')
    const r = await runCli(['key', 'show', '--pem', '--key', keyFile])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=]{60}\n-----END PUBLIC KEY-----\n$/)
    writeFileSync(join(dir, 'alice.pem'), r.stdout)
    const text = spawnSync('openssl', ['pkey', '-pubin', '-in', join(dir, 'alice.pem'), '-noout', '-text'], { encoding: 'utf8' })
    expect(text.status).toBe(0)
    expect(text.stdout).toMatch(/ED25519 Public-Key/)
    expect(text.stdout.replace(/[\s:]/g, '')).toContain(alice.key.publicKeyHex)
    // The same key by its hex (as the policy lists it), and the keyid by the in-toto/TUF rule.
    const byHex = await runCli(['key', 'show', '--pem', '--public', alice.key.publicKeyHex])
    expect(byHex.stdout).toBe(r.stdout)
    const json = JSON.parse((await runCli(['key', 'show', '--json', '--key', keyFile])).stdout)
    expect(json).toEqual({ keytype: 'ed25519', scheme: 'ed25519', keyval: { public: alice.key.publicKeyHex }, keyid: alice.key.keyid })
  })

  it('refuses a key file others can read, and asks for exactly one source', async () => {
    const loose = join(dir, 'loose.json')
    writeFileSync(loose, JSON.stringify(encodeBuilderKeyFile(alice.key)), { mode: 0o644 })
    const r = await runCli(['key', 'show', '--pem', '--key', loose])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/readable by other users .*chmod 600/)
    expect((await runCli(['key', 'show', '--pem'])).code).toBe(2)
  })
})

describe('one envelope verified by hand', () => {
  it('openssl pkeyutl -verify -rawin and @sigstore/core accept the signature over the PAE, and reject a changed payload', async () => {
    const envelope = JSON.parse(Buffer.from(buildEnvelope(alice, 'c')).toString('utf8')) as { payloadType: string, payload: string, signatures: Array<{ sig: string }> }
    const pem = (await runCli(['key', 'show', '--pem', '--public', alice.key.publicKeyHex])).stdout
    const pemFile = join(dir, 'key.pem')
    writeFileSync(pemFile, pem)
    // The README's recipe: PAE = "DSSEv1 <len type> <type> <len body> <body>".
    const payload = Buffer.from(envelope.payload, 'base64')
    const pae = Buffer.concat([Buffer.from(`DSSEv1 ${Buffer.byteLength(envelope.payloadType)} ${envelope.payloadType} ${payload.length} `), payload])
    writeFileSync(join(dir, 'pae.bin'), pae)
    writeFileSync(join(dir, 'sig.bin'), Buffer.from(envelope.signatures[0].sig, 'base64'))
    const openssl = (input: string): ReturnType<typeof spawnSync> => spawnSync('openssl', ['pkeyutl', '-verify', '-rawin', '-pubin', '-inkey', pemFile, '-sigfile', join(dir, 'sig.bin'), '-in', input], { encoding: 'utf8' })
    const ok = openssl(join(dir, 'pae.bin'))
    expect(ok.stdout).toMatch(/Signature Verified Successfully/)
    expect(ok.status).toBe(0)
    const tampered = Buffer.from(pae)
    tampered[tampered.length - 2] ^= 1
    writeFileSync(join(dir, 'pae-tampered.bin'), tampered)
    expect(openssl(join(dir, 'pae-tampered.bin')).status).not.toBe(0)

    const key = sigstoreCrypto.createPublicKey(pem)
    const sigstorePae = sigstoreDsse.preAuthEncoding(envelope.payloadType, payload)
    expect(Buffer.compare(sigstorePae, readFileSync(join(dir, 'pae.bin')))).toBe(0)
    expect(sigstoreCrypto.verify(sigstorePae, key, Buffer.from(envelope.signatures[0].sig, 'base64'))).toBe(true)
    expect(sigstoreCrypto.verify(tampered, key, Buffer.from(envelope.signatures[0].sig, 'base64'))).toBe(false)
  })
})
