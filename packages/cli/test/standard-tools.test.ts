// Quorate's envelopes checked by tools that know nothing of Quorate: OpenSSL (Debian's
// `openssl pkeyutl -rawin`) and @sigstore/core's DSSE helpers, from the PEM key that
// `quorate key show --pem` prints (issue 13, "Fields standard tools expect").
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { crypto as sigstoreCrypto, dsse as sigstoreDsse } from '@sigstore/core'
import { createPublicKey, verify as cryptoVerify, createHash } from 'node:crypto'
import { encodeBuilderKeyFile } from '@quorate/core'
import { runCli } from '../../../scripts/devnet.js'
import { builder, buildEnvelope, refEnvelope, policyFor, COMMIT, H } from '../../core/test/fixtures.js'
import { intotoJsonl } from '../src/bundle-format.js'

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

const a1 = builder('alice-1', 'alpha', 11)
const b1 = builder('bob-1', 'beta', 12)
const c1 = builder('carol-1', 'gamma', 13)
const three = policyFor([a1, b1, c1]) // threshold 2

function envelopesOf (list: Uint8Array[]): object[] { return list.map(e => JSON.parse(Buffer.from(e).toString('utf8')) as object) }
function paeSha256 (e: { payloadType: string, payload: string }): string {
  const body = Buffer.from(e.payload, 'base64')
  return createHash('sha256').update(Buffer.concat([Buffer.from(`DSSEv1 ${Buffer.byteLength(e.payloadType)} ${e.payloadType} ${body.length} `), body])).digest('hex')
}

describe('quorate bundle --format intoto-jsonl, read back by verify --bundle', () => {
  it('one envelope per line verifies offline like the JSON bundle, with the policy digest pinned', async () => {
    const policyFile = join(dir, 'policy-3.json')
    writeFileSync(policyFile, JSON.stringify(three.document))
    const list = envelopesOf([buildEnvelope(a1, 'a', { seq: 1 }), buildEnvelope(b1, 'a', { seq: 1 }), refEnvelope(a1), refEnvelope(b1)])
    const jsonl = join(dir, 'hello.intoto.jsonl')
    writeFileSync(jsonl, intotoJsonl(list))
    const lines = readFileSync(jsonl, 'utf8').trimEnd().split('\n')
    expect(lines).toHaveLength(4)
    for (const l of lines) expect(Object.keys(JSON.parse(l))).toEqual(['payloadType', 'payload', 'signatures'])
    const r = await runCli(['verify', '--bundle', jsonl, '--policy', policyFile, '--policy-digest', three.digest, '--ref', 'refs/heads/main', '--json'])
    expect(r.stderr).toMatch(/^PASSED: hello@aaaaaaaaaaaa is trusted: narSha256 a{64}/)
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'trusted', warnings: [], repoId: 'hello', commit: COMMIT })
    // A forged line counts for nothing: the quorum is one organization short, pending.
    const forged = JSON.parse(lines[1]) as { signatures: Array<{ sig: string }> }
    forged.signatures[0].sig = Buffer.alloc(64, 1).toString('base64')
    writeFileSync(jsonl, [lines[0], JSON.stringify(forged), lines[2]].join('\n') + '\n')
    const bad = await runCli(['verify', '--bundle', jsonl, '--policy', policyFile])
    expect(bad.code).toBe(3)
    // No header: the commit comes from the envelopes, or --commit must say which.
    writeFileSync(jsonl, intotoJsonl([...list, ...envelopesOf([buildEnvelope(c1, 'b', { commit: 'b'.repeat(40) })])]))
    const two = await runCli(['verify', '--bundle', jsonl, '--policy', policyFile])
    expect(two.code).toBe(2)
    expect(two.stderr).toMatch(/name 2 commits; give --repo ID and --commit SHA/)
    expect((await runCli(['verify', '--bundle', jsonl, '--policy', policyFile, '--commit', COMMIT])).code).toBe(0)
  })
})

describe('quorate verify --vsa-key --vsa-out: a signed SLSA verification summary', () => {
  it('PASSED: subjects the trusted output, names the policy and input envelopes; @sigstore/core and a hand check verify the signature', async () => {
    const policyFile = join(dir, 'policy-vsa.json')
    writeFileSync(policyFile, JSON.stringify(three.document))
    const list = envelopesOf([buildEnvelope(a1, 'a'), buildEnvelope(b1, 'a'), buildEnvelope(c1, 'b')])
    const bundle = join(dir, 'vsa.intoto.jsonl')
    writeFileSync(bundle, intotoJsonl(list))
    const gen = await runCli(['key', 'generate', '--out', join(dir, 'pipeline-key.json')])
    expect(gen.code).toBe(0)
    expect((await runCli(['key', 'generate', '--out', join(dir, 'pipeline-key.json')])).code).toBe(2) // never overwritten silently
    const vsaFile = join(dir, 'vsa.json')
    const r = await runCli(['verify', '--bundle', bundle, '--policy', policyFile, '--vsa-key', join(dir, 'pipeline-key.json'), '--vsa-out', vsaFile])
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/^PASSED: .*\nverification summary \(SLSA VSA, PASSED\) signed by keyid [0-9a-f]{64} written to /)
    const envelope = JSON.parse(readFileSync(vsaFile, 'utf8')) as { payloadType: string, payload: string, signatures: Array<{ keyid: string, sig: string }> }
    const pem = (await runCli(['key', 'show', '--pem', '--key', join(dir, 'pipeline-key.json')])).stdout
    const keyJson = JSON.parse((await runCli(['key', 'show', '--json', '--key', join(dir, 'pipeline-key.json')])).stdout) as { keyid: string, keyval: { public: string } }
    expect(envelope.signatures[0].keyid).toBe(keyJson.keyid)
    const payload = Buffer.from(envelope.payload, 'base64')
    const sig = Buffer.from(envelope.signatures[0].sig, 'base64')
    // @sigstore/core's DSSE helpers.
    expect(envelope.payloadType).toBe('application/vnd.in-toto+json')
    expect(sigstoreCrypto.verify(sigstoreDsse.preAuthEncoding(envelope.payloadType, payload), sigstoreCrypto.createPublicKey(pem), sig)).toBe(true)
    // An independent check: PAE by hand, the raw key as a JWK, node:crypto Ed25519.
    const pae = Buffer.concat([Buffer.from(`DSSEv1 ${envelope.payloadType.length} ${envelope.payloadType} ${payload.length} `), payload])
    const raw = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(keyJson.keyval.public, 'hex').toString('base64url') }, format: 'jwk' })
    expect(cryptoVerify(null, pae, raw, sig)).toBe(true)
    expect(cryptoVerify(null, Buffer.concat([pae, Buffer.from(' ')]), raw, sig)).toBe(false)
    const st = JSON.parse(payload.toString('utf8'))
    expect(st._type).toBe('https://in-toto.io/Statement/v1')
    expect(st.predicateType).toBe('https://slsa.dev/verification_summary/v1')
    expect(st.subject[0]).toEqual({ name: `hello@${COMMIT}`, digest: { narSha256: H('a') } })
    expect(st.predicate).toMatchObject({
      verifier: { id: 'https://quorate.dev/verifier/quorate-verify/v1' },
      resourceUri: `git+file:///srv/hello.git@${COMMIT}`,
      policy: { digest: { sha256: three.digest } },
      verificationResult: 'PASSED',
      verifiedLevels: ['QUORATE_QUORUM_REPRODUCED'],
      quorate_decision: { status: 'trusted', supportingOrgs: ['alpha', 'beta'], threshold: 2 }
    })
    expect(Date.parse(st.predicate.timeVerified)).toBeGreaterThan(0)
    expect(st.predicate.inputAttestations.map((a: { digest: { dssePaeSha256: string } }) => a.digest.dssePaeSha256).sort())
      .toEqual(list.map(e => paeSha256(e as { payloadType: string, payload: string })).sort())
  })

  it('FAILED for a disputed commit: the commit as subject, no verified level', async () => {
    const policyFile = join(dir, 'policy-vsa.json')
    const bundle = join(dir, 'disputed.intoto.jsonl')
    writeFileSync(bundle, intotoJsonl(envelopesOf([buildEnvelope(a1, 'a'), buildEnvelope(b1, 'b'), buildEnvelope(c1, 'c')])))
    const vsaFile = join(dir, 'vsa-failed.json')
    const r = await runCli(['verify', '--bundle', bundle, '--policy', policyFile, '--vsa-key', join(dir, 'pipeline-key.json'), '--vsa-out', vsaFile])
    expect(r.code).toBe(1)
    const st = JSON.parse(Buffer.from((JSON.parse(readFileSync(vsaFile, 'utf8')) as { payload: string }).payload, 'base64').toString('utf8'))
    expect(st.subject).toEqual([{ name: `hello@${COMMIT}`, digest: { gitCommit: COMMIT } }])
    expect(st.predicate).toMatchObject({ verificationResult: 'FAILED', verifiedLevels: [], quorate_decision: { status: 'disputed', exitCode: 1 } })
    expect((await runCli(['verify', '--bundle', bundle, '--policy', policyFile, '--vsa-out', vsaFile])).code).toBe(2)
  })
})
