// The quorate command and a single real node process facing bad input: every error names
// the file or field and what to do, and a running node survives failing and hanging builds
// and an unreachable repository.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync, readFileSync, writeFileSync, chmodSync, statSync, mkdirSync, symlinkSync, copyFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { execFileSync, spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { hashOutput, GitMirror } from '@quorate/builder'
import { keyPairFromSeed } from '@quorate/core'
// @ts-expect-error plain JS helper shared with the demo
import { CLI, ROOT, createSampleRepo, addCommit, commitAll, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli, editConfig } from '../scripts/devnet.js'

let work: string
beforeAll(() => { work = mkdtempSync(join(tmpdir(), 'quorate-cli-')) })
afterAll(() => { rmSync(work, { recursive: true, force: true }) })

async function oneNode (name: string, recipe: Record<string, unknown>, repoUrl?: string): Promise<any> {
  const repo = join(work, `${name}-repo`)
  const commit = createSampleRepo(repo)
  const net = await initNetwork({ dir: join(work, name), repoUrl: repoUrl ?? repo, recipe, pollSeconds: 1, builders: [{ name: `${name}-b`, org: `${name}-org` }] })
  return { ...net, node: net.nodes[0], commit }
}

describe('quorate init and policy', () => {
  it('writes a private builder key, a peer key, a config and prints what the others need', async () => {
    const dir = join(work, 'init')
    const r = await runCli(['init', '--dir', dir, '--name', 'b1', '--org', 'o1', '--listen', '/ip4/127.0.0.1/tcp/4555'])
    expect(r.code).toBe(0)
    const member = JSON.parse(readFileSync(join(dir, 'member.json'), 'utf8'))
    expect(r.stdout).toContain(`public key: ${member.publicKey}`)
    expect(r.stdout).toContain(`keyid:      ${member.keyid}`)
    expect(r.stdout).toContain(`/ip4/127.0.0.1/tcp/4555/p2p/${member.peerId}`)
    expect(statSync(join(dir, 'builder-key.json')).mode & 0o777).toBe(0o600)
    expect(statSync(join(dir, 'peer-key.json')).mode & 0o777).toBe(0o600)
    // It says where the keys are, with their modes.
    expect(r.stdout).toContain(`builder key: ${join(dir, 'builder-key.json')} (mode 0600`)
    expect(r.stdout).toContain(`peer key:    ${join(dir, 'peer-key.json')} (mode 0600)`)
    const again = await runCli(['init', '--dir', dir, '--name', 'b1', '--org', 'o1'])
    expect(again.code).toBe(2)
    expect(again.stderr).toMatch(/already exists; a builder keeps its key/)
    // --force over key files someone loosened: the new keys are 0600 again.
    chmodSync(join(dir, 'builder-key.json'), 0o644)
    chmodSync(join(dir, 'peer-key.json'), 0o644)
    expect((await runCli(['init', '--dir', dir, '--name', 'b1', '--org', 'o1', '--force'])).code).toBe(0)
    expect(statSync(join(dir, 'builder-key.json')).mode & 0o777).toBe(0o600)
    expect(statSync(join(dir, 'peer-key.json')).mode & 0o777).toBe(0o600)
  })

  it('policy check names the bad field', async () => {
    const f = join(work, 'p.json')
    writeFileSync(f, JSON.stringify({ version: 1, builders: [], repositories: [], quorum: {} }))
    const r = await runCli(['policy', 'check', f])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`${f}: builders: must list at least one builder`)
    writeFileSync(f, '{"version": 1,')
    expect((await runCli(['policy', 'check', f])).stderr).toMatch(/p.json: the network policy is not valid JSON/)
  })

  it('policy check refuses the repository URLs a node refuses (remote helpers, option injection)', async () => {
    const f = join(work, 'hostile-url.json')
    const policy = (url: string): string => JSON.stringify({
      version: 1,
      builders: [{ name: 'b1', org: 'o1', keys: [{ publicKey: keyPairFromSeed(new Uint8Array(32).fill(7)).publicKeyHex }] }],
      repositories: [{ id: 'x', url, branches: ['main'], recipe: { build: ['true'], output: '.', outputKind: 'dir' } }],
      quorum: {}
    })
    for (const url of ['ext::sh -c touch% /tmp/pwned', '--upload-pack=touch /tmp/pwned', 'ssh://-oProxyCommand=touch%20/tmp/pwned/a']) {
      writeFileSync(f, policy(url))
      const r = await runCli(['policy', 'check', f])
      expect(r.code, url).toBe(2)
      expect(r.stderr, url).toMatch(/repositories\[0\]\.url: .* is not allowed: /)
      // The builder refuses the same URL with the same reason.
      expect(() => new GitMirror({ url, dir: join(work, 'never') }), url).toThrow(r.stderr.split(' is not allowed: ')[1].split(';')[0])
    }
    writeFileSync(f, policy('https://example.org/a.git'))
    expect((await runCli(['policy', 'check', f])).code).toBe(0)
  })

  it('quorate digest prints the narSha256 of a directory', async () => {
    const d = join(work, 'digest-me')
    mkdirSync(join(d, 'sub'), { recursive: true })
    writeFileSync(join(d, 'sub', 'x'), 'x')
    const r = await runCli(['digest', d])
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toBe(`${(await hashOutput(d)).narSha256}  ${d}`)
    expect((await runCli(['digest', join(work, 'nope')])).code).toBe(2)
  })
})

describe('the quorate command helps', () => {
  const COMMANDS = ['init', 'policy', 'node', 'verify', 'bundle', 'audit', 'latest', 'which', 'key', 'backup', 'restore', 'digest', 'status']

  it('gives every command its own --help with examples (exit 0), and --version', async () => {
    for (const cmd of COMMANDS) {
      const r = await runCli([cmd, '--help'])
      expect(r.code, cmd).toBe(0)
      expect(r.stdout, cmd).toMatch(new RegExp(`^Usage: quorate ${cmd} `))
      expect(r.stdout, cmd).toMatch(/\nExamples:\n {2}(quorate|DIGEST=)/)
      expect(r.stderr, cmd).toBe('')
    }
    // The flags the usage used to omit are documented.
    const init = (await runCli(['init', '--help'])).stdout
    for (const flag of ['--http-host', '--poll-seconds', '--loopback', '--policy', '--force']) expect(init).toContain(flag)
    expect((await runCli(['audit', '--help'])).stdout).toContain('--limit')
    expect((await runCli(['verify', '--help'])).stdout).toMatch(/--bundle FILE .*--repo\/--commit optional/)
    expect((await runCli(['help', 'verify'])).stdout).toMatch(/^Usage: quorate verify/)
    expect((await runCli(['policy', 'assemble', '--help'])).stdout).toMatch(/^Usage: quorate policy/)
    const v = await runCli(['--version'])
    expect(v.code).toBe(0)
    expect(v.stdout).toBe(`quorate ${JSON.parse(readFileSync(join(ROOT, 'packages', 'cli', 'package.json'), 'utf8')).version}\n`)
    // `npx quorate` in the workspace: the root package names an executable bin that runs the CLI.
    const bin = join(ROOT, JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).bin.quorate)
    expect(statSync(bin).mode & 0o111).toBe(0o111)
    expect(execFileSync(bin, ['--version'], { encoding: 'utf8' })).toBe(v.stdout)
    // npm ci links it (the workspace package's bin) as node_modules/.bin/quorate, which npx runs.
    expect(execFileSync(join(ROOT, 'node_modules', '.bin', 'quorate'), ['--version'], { encoding: 'utf8' })).toBe(v.stdout)
    expect(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.prepare).toBe('tsc -b')
    // Without a build, the command says how to make one instead of printing a module-not-found stack.
    const unbuilt = join(work, 'unbuilt-cli')
    mkdirSync(join(unbuilt, 'bin'), { recursive: true })
    copyFileSync(bin, join(unbuilt, 'bin', 'quorate.js'))
    const missing = spawnSync(process.execPath, [join(unbuilt, 'bin', 'quorate.js'), '--version'], { encoding: 'utf8' })
    expect(missing.status).toBe(2)
    expect(missing.stderr).toBe('quorate: the CLI is not built yet (no packages/cli/dist/main.js); run "npm run build" in the repository (npm ci builds it too)\n')
  })

  it('answers errors in one sentence without a stack, unless --debug', async () => {
    const r = await runCli(['status', '--node', 'http://127.0.0.1:1/v1'])
    expect(r.code).toBe(2)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/^FAILED: http:\/\/127\.0\.0\.1:1\/v1: no answer .*without \/v1\)\?/)
    expect(r.stderr).not.toMatch(/\n\s+at /)
    const unknown = await runCli(['verify', '--bogus'])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toBe('FAILED: usage: Unknown option \'--bogus\'; see "quorate verify --help"\n')
    const debug = await runCli(['status', '--node', 'http://127.0.0.1:1/v1', '--debug'])
    expect(debug.code).toBe(2)
    expect(debug.stderr).toMatch(/\n\s+at .*main\.js/)
  })

  it('stops quietly when the reader of its output goes away (| head -1), without EPIPE', async () => {
    const f = join(work, 'epipe-policy.json')
    writeFileSync(f, JSON.stringify({
      version: 1,
      builders: [{ name: 'b1', org: 'o1', keys: [{ publicKey: keyPairFromSeed(new Uint8Array(32).fill(9)).publicKeyHex }] }],
      repositories: Array.from({ length: 400 }, (_, i) => ({ id: `r${i}`, url: `https://example.org/r${i}.git`, branches: ['main'], recipe: { build: ['true'], output: '.', outputKind: 'dir' } })),
      quorum: {}
    }))
    // The reader exits before quorate writes: every write meets a closed pipe.
    for (const reader of ['true', 'head -1']) {
      const out = execFileSync('bash', ['-c', `set -o pipefail; node ${CLI} policy check ${f} 2>"${f}.err" | ${reader}; echo "exit=$?"`], { encoding: 'utf8' })
      expect(out, reader).toMatch(/exit=0\n$/)
      expect(readFileSync(`${f}.err`, 'utf8'), reader).toBe('')
    }
  })

  it('assembles a policy of many repositories (--repo groups and --repos FILE) and prints just its digest', async () => {
    const dir = join(work, 'many')
    const members: string[] = []
    for (const [name, org] of [['m1', 'o1'], ['m2', 'o2'], ['m3', 'o3']]) {
      expect((await runCli(['init', '--dir', join(dir, name), '--name', name, '--org', org])).code).toBe(0)
      members.push('--member', join(dir, name, 'member.json'))
    }
    const recipe = join(dir, 'recipe.json')
    writeFileSync(recipe, JSON.stringify({ build: ['make'], output: 'out', outputKind: 'dir' }))
    writeFileSync(join(dir, 'repos.json'), JSON.stringify([{ id: 'lua', url: 'https://github.com/lua/lua.git', branches: ['master'], recipe: 'recipe.json' }]))
    const out = join(dir, 'policy.json')
    const r = await runCli(['policy', 'assemble', ...members,
      '--repo', 'hello', '--url', 'https://git.example/hello.git', '--recipe', recipe,
      '--repo', 'zlib', '--url', 'https://github.com/madler/zlib.git', '--branch', 'develop', '--tag', 'v*', '--recipe', recipe,
      '--repos', join(dir, 'repos.json'), '--out', out])
    expect(r.stderr).toMatch(/policy digest [0-9a-f]{64}: 3 builders, 3 organizations, 3 repositories, threshold 2/)
    expect(r.code).toBe(0)
    const doc = JSON.parse(readFileSync(out, 'utf8'))
    expect(doc.repositories.map((x: { id: string, branches: string[] }) => [x.id, x.branches])).toEqual([['hello', ['main']], ['zlib', ['develop']], ['lua', ['master']]])
    expect(doc.repositories[1].tags).toEqual(['v*'])
    const digest = await runCli(['policy', 'digest', out])
    expect(digest.code).toBe(0)
    expect(digest.stdout).toMatch(/^[0-9a-f]{64}\n$/)
    expect(r.stderr).toContain(digest.stdout.trim())
    // Flags before any --repo, or a repository without its recipe, are usage errors that say what to do.
    const early = await runCli(['policy', 'assemble', ...members, '--url', 'https://x.example/a.git', '--repo', 'a', '--recipe', recipe])
    expect(early.code).toBe(2)
    expect(early.stderr).toMatch(/--url https:\/\/x\.example\/a\.git comes before any --repo/)
    const missing = await runCli(['policy', 'assemble', ...members, '--repo', 'a', '--url', 'https://x.example/a.git'])
    expect(missing.stderr).toMatch(/--repo a needs its --url and --recipe/)
  })
})

describe('a node facing bad input', () => {
  it('refuses a builder key readable by others, a malformed config and a bad policy, naming the file', async () => {
    const { node, policyFile } = await oneNode('refuse', { build: ['true'], output: '.', outputKind: 'dir' })
    const keyFile = join(node.dir, 'builder-key.json')
    chmodSync(keyFile, 0o644)
    let r = await runCli(['node', '--config', node.config])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`${keyFile}: the builder key is readable by other users (mode 644); run "chmod 600 ${keyFile}"`)
    chmodSync(keyFile, 0o600)
    const cfg = JSON.parse(readFileSync(node.config, 'utf8'))
    writeFileSync(node.config, JSON.stringify({ ...cfg, pollIntervalSeconds: 'often' }))
    r = await runCli(['node', '--config', node.config])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`${node.config}: pollIntervalSeconds: must be a whole number`)
    writeFileSync(node.config, JSON.stringify(cfg))
    const policy = JSON.parse(readFileSync(policyFile, 'utf8'))
    policy.repositories[0].recipe.output = '../../etc'
    writeFileSync(policyFile, JSON.stringify(policy))
    r = await runCli(['node', '--config', node.config])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/policy.json: repositories\[0\]\.recipe\.output: "..\/..\/etc" leaves the checkout/)
  })

  it('keeps running when its repository URL does not exist, and says what to check', async () => {
    const { node } = await oneNode('unreachable', { build: ['true'], output: '.', outputKind: 'dir' }, join(work, 'no-such-repo'))
    let log = ''
    await startNodeProcess(node, { onLine: (_n: unknown, l: string) => { log += l + '\n' } })
    try {
      await waitFor(() => /poll failed/.test(log), { timeoutMs: 20_000, what: 'the poll failure to be logged' })
      expect(log).toMatch(/check the repository URL/)
      expect((await getJson(`${node.url}/healthz`)).ok).toBe(true)
    } finally {
      await stopNodeProcess(node)
    }
  })

  it('records a failing build as a signed failure that never counts, and a hanging one as a timeout, and stays up', async () => {
    const failing = await oneNode('failing', { build: ['sh', '-c', 'echo broken >&2; exit 3'], output: 'dist', outputKind: 'dir' })
    await startNodeProcess(failing.node, {})
    try {
      const d = await waitFor(async () => {
        const r = await getJson(`${failing.node.url}/v1/repos/${failing.repoId}/commits/${failing.commit}`)
        return r.decision.failures.length > 0 ? r : undefined
      }, { timeoutMs: 30_000, what: 'a failure attestation' })
      expect(d.decision.status).toBe('pending')
      expect(d.decision.failures[0]).toMatchObject({ builder: 'failing-b', exitStatus: 3, timedOut: false })
      expect((await getJson(`${failing.node.url}/healthz`)).ok).toBe(true)
    } finally {
      await stopNodeProcess(failing.node)
    }
    const hanging = await oneNode('hanging', { build: ['sh', '-c', 'sleep 300 & sleep 300'], output: 'dist', outputKind: 'dir', timeoutSeconds: 1 })
    await startNodeProcess(hanging.node, {})
    try {
      const d = await waitFor(async () => {
        const r = await getJson(`${hanging.node.url}/v1/repos/${hanging.repoId}/commits/${hanging.commit}`)
        return r.decision.failures.length > 0 ? r : undefined
      }, { timeoutMs: 30_000, what: 'a timeout failure attestation' })
      expect(d.decision.failures[0].timedOut).toBe(true)
      expect((await getJson(`${hanging.node.url}/healthz`)).ok).toBe(true)
    } finally {
      await stopNodeProcess(hanging.node)
    }
  })

  it('a single-organization network trusts its own build, keeps it across a restart, and a second node on the same data directory is refused', async () => {
    const { node, repoId, commit } = await oneNode('restart', { build: ['sh', 'build.sh'], output: 'dist', outputKind: 'dir' })
    await startNodeProcess(node, {})
    let digest: string
    try {
      digest = await waitFor(async () => (await getJson(`${node.url}/v1/repos/${repoId}/commits/${commit}`)).decision.trusted?.narSha256, { timeoutMs: 30_000, what: 'trusted' })
      const second = await runCli(['node', '--config', node.config])
      expect(second.code).toBe(2)
      expect(second.stderr).toMatch(/another Quorate node is using the data directory/)
    } finally {
      await stopNodeProcess(node)
    }
    await startNodeProcess(node, {})
    try {
      const r = await getJson(`${node.url}/v1/repos/${repoId}/commits/${commit}`)
      expect(r.decision.trusted.narSha256).toBe(digest)
      expect(r.envelopes.filter((e: any) => JSON.parse(Buffer.from(e.payload, 'base64').toString()).predicateType === 'https://slsa.dev/provenance/v1')).toHaveLength(1)
    } finally {
      await stopNodeProcess(node)
    }
  })

  it('builds with the recipe a commit carries in .quorate/recipe.json, and signs a failure for a commit without one', async () => {
    const { node, repoId, commit, policyFile } = await oneNode('fromrepo', { build: ['true'], output: '.', outputKind: 'dir' })
    const repo = join(work, 'fromrepo-repo')
    const policy = JSON.parse(readFileSync(policyFile, 'utf8'))
    delete policy.repositories[0].recipe
    policy.repositories[0].recipeFromRepo = true
    writeFileSync(policyFile, JSON.stringify(policy))
    const withRecipe = addCommit(repo, '.quorate/recipe.json', JSON.stringify({ build: ['sh', 'build.sh'], output: 'dist', outputKind: 'dir' }), 'carry a recipe')
    rmSync(join(repo, '.quorate'), { recursive: true })
    const without = commitAll(repo, 'drop the recipe')
    await startNodeProcess(node, {})
    try {
      const ok = await waitFor(async () => { const r = await getJson(`${node.url}/v1/repos/${repoId}/commits/${withRecipe}`); return r.decision.status === 'trusted' ? r : undefined }, { timeoutMs: 30_000, what: 'the commit with a recipe to be trusted' })
      expect(ok.decision.trusted.recipeDigest).toMatch(/^[0-9a-f]{64}$/)
      const bad = await waitFor(async () => { const r = await getJson(`${node.url}/v1/repos/${repoId}/commits/${without}`); return r.decision.failures.length > 0 ? r : undefined }, { timeoutMs: 30_000, what: 'a failure for the commit without a recipe' })
      expect(bad.decision.failures[0].reason).toMatch(/has no .quorate\/recipe.json/)
      expect(commit).not.toBe(without)
    } finally {
      await stopNodeProcess(node)
    }
  })

  it('signs a failure naming requireRoot for a commit whose recipe has no build root when the policy requires one', async () => {
    const { node, repoId, policyFile } = await oneNode('needroot', { build: ['true'], output: '.', outputKind: 'dir' })
    const repo = join(work, 'needroot-repo')
    const policy = JSON.parse(readFileSync(policyFile, 'utf8'))
    delete policy.repositories[0].recipe
    policy.repositories[0].recipeFromRepo = true
    policy.repositories[0].requireRoot = true
    writeFileSync(policyFile, JSON.stringify(policy))
    const rootless = addCommit(repo, '.quorate/recipe.json', JSON.stringify({ build: ['true'], output: '.', outputKind: 'dir' }), 'a recipe without a root')
    await startNodeProcess(node, {})
    try {
      const d = await waitFor(async () => { const r = await getJson(`${node.url}/v1/repos/${repoId}/commits/${rootless}`); return r.decision.failures.length > 0 ? r : undefined }, { timeoutMs: 30_000, what: 'a failure for the recipe without a root' })
      expect(d.decision.failures[0].reason).toMatch(/requires a pinned build root.*"requireRoot": true.*has no "root"/)
      expect(d.decision.status).not.toBe('trusted')
    } finally {
      await stopNodeProcess(node)
    }
  })

  it('refuses to build without bubblewrap unless the config says "sandbox": "none", and then marks its attestations', async () => {
    const { node, repoId, commit } = await oneNode('nobwrap', { build: ['sh', 'build.sh'], output: 'dist', outputKind: 'dir' })
    // A PATH with git but without bwrap.
    const bin = join(work, 'bin-without-bwrap')
    mkdirSync(bin)
    symlinkSync('/usr/bin/git', join(bin, 'git'))
    const cfg = JSON.parse(readFileSync(node.config, 'utf8'))
    writeFileSync(node.config, JSON.stringify({ ...cfg, sandbox: 'bwrap' }))
    const refused = await runCli(['node', '--config', node.config], { env: { ...process.env, PATH: bin } })
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/sandbox is "bwrap" but bubblewrap is not installed.*apt-get install bubblewrap.*"sandbox": "none"/)
    writeFileSync(node.config, JSON.stringify({ ...cfg, sandbox: 'none' }))
    let log = ''
    await startNodeProcess(node, { onLine: (_n: unknown, l: string) => { log += l + '\n' } })
    try {
      expect(log).toMatch(/sandbox disabled/)
      const d = await waitFor(async () => { const r = await getJson(`${node.url}/v1/repos/${repoId}/commits/${commit}`); return r.decision.status === 'trusted' ? r : undefined }, { timeoutMs: 30_000, what: 'trusted' })
      const statement = JSON.parse(Buffer.from(d.envelopes.find((e: any) => JSON.parse(Buffer.from(e.payload, 'base64').toString()).predicateType === 'https://slsa.dev/provenance/v1').payload, 'base64').toString())
      expect(statement.predicate.buildDefinition.internalParameters.sandbox).toBe('none')
    } finally {
      await stopNodeProcess(node)
    }
  })

  it('never shows repository credentials in logs or API output', async () => {
    const secret = 'hunter2-very-secret-token'
    const { node, policyFile } = await oneNode('secret', { build: ['true'], output: '.', outputKind: 'dir' }, `https://builder:${secret}@127.0.0.1:9/private.git`)
    editConfig(node, (c: any) => { c.credentials = { sample: { token: `${secret}-2` } } })
    let log = ''
    await startNodeProcess(node, { onLine: (_n: unknown, l: string) => { log += l + '\n' } })
    try {
      await waitFor(() => /poll failed/.test(log), { timeoutMs: 20_000, what: 'the poll failure' })
      const status = await (await fetch(`${node.url}/v1/status`)).text()
      const repos = await (await fetch(`${node.url}/v1/repos`)).text()
      const policy = await (await fetch(`${node.url}/v1/policy`)).text()
      for (const text of [log, status, repos, policy]) expect(text).not.toContain(secret)
      expect(readFileSync(policyFile, 'utf8')).toContain(secret) // it was really there to leak
    } finally {
      await stopNodeProcess(node)
    }
  })

  it('attests an OCI image built deterministically from the output, so a pipeline can pin image@sha256 from the quorum', async () => {
    const { node, repoId, commit, policyFile } = await oneNode('oci', { build: ['sh', 'build.sh'], output: 'dist', outputKind: 'oci', image: { refName: 'sample:1.0', config: { Cmd: ['/app.js'] } } })
    await startNodeProcess(node, {})
    try {
      const d = await waitFor(async () => { const r = await getJson(`${node.url}/v1/repos/${repoId}/commits/${commit}`); return r.decision.status === 'trusted' ? r : undefined }, { timeoutMs: 30_000, what: 'trusted' })
      const image = d.decision.trusted.subjects.find((s: any) => s.mediaType === 'application/vnd.oci.image.manifest.v1+json')
      expect(image.name).toBe('sample:1.0')
      const r = await runCli(['verify', '--node', node.url, '--policy', policyFile, '--repo', repoId, '--commit', commit, '--image'])
      expect(r.code).toBe(0)
      expect(r.stdout.trim()).toBe(`sample:1.0@sha256:${image.digest.sha256}`)
      // The manifest is in the signed output: its blob is listed under its own digest.
      const files = JSON.parse(Buffer.from(await (await fetch(`${node.url}/v1/blobs/${d.decision.trusted.fileListSha256}`)).arrayBuffer()).toString())
      expect(files.files.find((f: any) => f.path === `blobs/sha256/${image.digest.sha256}`)?.sha256).toBe(image.digest.sha256)
    } finally {
      await stopNodeProcess(node)
    }
  })
})
