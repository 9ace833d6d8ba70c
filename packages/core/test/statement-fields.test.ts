// Provenance fields that standard SLSA/in-toto tools read (issue 13): an absolute
// resolvedDependencies URI without credentials, a fetchable build-log byproduct, the recipe's
// tools as builderDependencies (the fingerprint kept in internalParameters).
import { describe, it, expect } from 'vitest'
import { gitDependencyUri, makeProvenanceStatement, parseAttestation, signStatement, parseEnvelope } from '../src/index.js'
import { RECIPE, COMMIT, H, builder } from './fixtures.js'

describe('gitDependencyUri', () => {
  it('writes git+<absolute URL>@<ref> with credentials, query and fragment removed', () => {
    expect(gitDependencyUri('https://git.example/hello.git', 'refs/heads/main')).toBe('git+https://git.example/hello.git@refs/heads/main')
    expect(gitDependencyUri('https://x-access-token:ghp_secret@github.com/o/r.git?token=abc#frag', 'refs/heads/main')).toBe('git+https://github.com/o/r.git@refs/heads/main')
    expect(gitDependencyUri('ssh://git@git.example:2222/srv/hello.git', 'refs/tags/v1')).toBe('git+ssh://git.example:2222/srv/hello.git@refs/tags/v1')
    expect(gitDependencyUri('git@github.com:o/r.git', 'refs/heads/main')).toBe('git+ssh://github.com/o/r.git@refs/heads/main')
    expect(gitDependencyUri('/srv/git/hello.git', 'refs/heads/main')).toBe('git+file:///srv/git/hello.git@refs/heads/main')
    expect(gitDependencyUri('file:///srv/git/hello.git', COMMIT)).toBe(`git+file:///srv/git/hello.git@${COMMIT}`)
    for (const u of ['https://user:pw@h/r.git', 'https://tok@h/r.git', 'git@h:r.git']) expect(gitDependencyUri(u, 'refs/heads/main')).not.toMatch(/pw|tok|\/\/[^/]*@/)
  })
})

describe('provenance statement fields', () => {
  const base = {
    repoId: 'hello', ref: 'refs/heads/main', commit: COMMIT, recipe: RECIPE, narSha256: H('a'), fileListSha256: H('b'), topLevelFiles: [],
    logSha256: H('c'), fingerprint: { os: 'Debian', sandbox: 'bwrap', tools: { make: 'GNU Make 4.3', git: 'git version 2.39.5', bwrap: 'bubblewrap 0.8.0' } },
    builderId: 'https://quorate.dev/builders/alpha/alice-1', invocationId: 'i', startedOn: '', finishedOn: '', log: { seq: 0, prev: null }
  }

  it('names the repository by its URL, the log by where it is served, and the tools as builderDependencies', () => {
    const st = makeProvenanceStatement({ ...base, repositoryUrl: 'https://bot:secret@git.example/hello.git', logUri: 'https://quorate.alpha.example/v1/blobs/' + H('c') }) as any
    expect(st.predicate.buildDefinition.resolvedDependencies).toEqual([{ uri: 'git+https://git.example/hello.git@refs/heads/main', digest: { gitCommit: COMMIT } }])
    expect(JSON.stringify(st)).not.toContain('secret')
    expect(st.predicate.runDetails.byproducts[1]).toEqual({ name: 'build-log', digest: { sha256: H('c') }, uri: 'https://quorate.alpha.example/v1/blobs/' + H('c') })
    expect(st.predicate.runDetails.builder).toEqual({
      id: base.builderId,
      builderDependencies: [
        { name: 'bwrap', uri: 'pkg:generic/bwrap', annotations: { version: 'bubblewrap 0.8.0' } },
        { name: 'git', uri: 'pkg:generic/git', annotations: { version: 'git version 2.39.5' } },
        { name: 'make', uri: 'pkg:generic/make', annotations: { version: 'GNU Make 4.3' } }
      ]
    })
    expect(st.predicate.buildDefinition.internalParameters).toEqual(base.fingerprint)
    // Still a valid attestation, with the same result as without the new fields (they are not compared).
    const signed = signStatement(st, builder('alice-1', 'alpha', 1).key)
    const a = parseAttestation(parseEnvelope(signed.envelope).payloadBytes)
    const plain = parseAttestation(parseEnvelope(signStatement(makeProvenanceStatement(base), builder('alice-1', 'alpha', 1).key).envelope).payloadBytes)
    expect(a.kind === 'build' && plain.kind === 'build' && a.resultDigest === plain.resultDigest).toBe(true)
  })

  it('without a URL keeps the old repoId form and no log uri; no tools, no builderDependencies', () => {
    const st = makeProvenanceStatement({ ...base, fingerprint: { sandbox: 'none' } }) as any
    expect(st.predicate.buildDefinition.resolvedDependencies[0].uri).toBe('git+hello@refs/heads/main')
    expect(st.predicate.runDetails.byproducts[1]).toEqual({ name: 'build-log', digest: { sha256: H('c') } })
    expect(st.predicate.runDetails.builder).toEqual({ id: base.builderId })
  })
})
