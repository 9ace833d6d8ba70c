// Running a node for years: backup and restore of a stopped node's data directory, and the
// docker-compose deployment kept consistent with the CLI.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync, readFileSync, existsSync, readdirSync, writeFileSync, statSync } from 'node:fs'
import { execFileSync, spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parsePolicy } from '@quorate/core'
import { loadNodeConfig } from '@quorate/node/config'
// @ts-expect-error plain JS helper shared with the demo
import { CLI, ROOT, createSampleRepo, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli } from '../scripts/devnet.js'

let work: string
beforeAll(() => { work = mkdtempSync(join(tmpdir(), 'quorate-maint-')) })
afterAll(() => { rmSync(work, { recursive: true, force: true }) })

describe('backup and restore', () => {
  it('refuses while the node runs, then round-trips a stopped node\'s data without rebuilding', async () => {
    const repo = join(work, 'repo')
    const commit = createSampleRepo(repo)
    const net = await initNetwork({ dir: join(work, 'net'), repoUrl: repo, pollSeconds: 1, builders: [{ name: 'keeper', org: 'k' }] })
    const node = net.nodes[0]
    const backup = join(work, 'node.tar.gz')
    try {
      await startNodeProcess(node, {})
      const before = await waitFor(async () => { const r = await getJson(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`); return r.decision.status === 'trusted' ? r : undefined }, { timeoutMs: 30_000, what: 'trusted' })
      // An output file, served from the store's blob store by the hash in the signed file list.
      const fileList = JSON.parse(Buffer.from(await (await fetch(`${node.url}/v1/blobs/${before.decision.trusted.fileListSha256}`)).arrayBuffer()).toString('utf8'))
      const outputFile = fileList.files.find((f: { type: string }) => f.type === 'file')
      const served = await fetch(`${node.url}/v1/files/${outputFile.sha256}`)
      expect(served.status).toBe(200)
      const live = await runCli(['backup', '--config', node.config, '--out', backup])
      expect(live.code).toBe(2)
      expect(live.stderr).toMatch(/a node is running on .*; stop it before you back it up/)
      await stopNodeProcess(node)
      const made = await runCli(['backup', '--config', node.config, '--out', backup])
      expect(made.code).toBe(0)
      expect(made.stdout).toMatch(/backed up db(, blobs)? of /)
      const dataDir = loadNodeConfig(node.config).dataDir
      const refused = await runCli(['restore', '--config', node.config, '--from', backup])
      expect(refused.code).toBe(2)
      expect(refused.stderr).toMatch(/already holds a store; pass --force/)
      rmSync(join(dataDir, 'db'), { recursive: true, force: true })
      rmSync(join(dataDir, 'blobs'), { recursive: true, force: true })
      const restored = await runCli(['restore', '--config', node.config, '--from', backup])
      expect(restored.code).toBe(0)
      node.log = ''
      await startNodeProcess(node, {})
      const after = await getJson(`${node.url}/v1/repos/${net.repoId}/commits/${commit}`)
      expect(after.decision.trusted.narSha256).toBe(before.decision.trusted.narSha256)
      expect(after.envelopes).toHaveLength(before.envelopes.length)
      expect(Buffer.from(await (await fetch(`${node.url}/v1/files/${outputFile.sha256}`)).arrayBuffer())).toEqual(Buffer.from(await served.arrayBuffer()))
      // The restored node had its chance to build: it polled the repository and its queue is
      // empty and idle. It built nothing (the restored store holds the result).
      await waitFor(async () => {
        const s = await getJson(`${node.url}/v1/status`)
        return s.stats.polls >= 1 && s.queue.queued === 0 && s.queue.running === 0 && s.stats.buildsRunning === 0 ? s : undefined
      }, { timeoutMs: 30_000, what: 'a finished poll and an idle build queue' })
      expect(node.log).not.toMatch(/build started/)
      const garbage = join(work, 'garbage.tar.gz')
      writeFileSync(garbage, 'not a tarball')
      await stopNodeProcess(node)
      const bad = await runCli(['restore', '--config', node.config, '--from', garbage, '--force'])
      expect(bad.code).toBe(2)
      expect(bad.stderr).toMatch(/not a readable backup/)
    } finally {
      await stopNodeProcess(node)
    }
  })
})

describe('docker-compose', () => {
  it('compose-init prepares valid node configs and a policy, and docker-compose accepts the file', () => {
    const out = join(work, 'compose')
    execFileSync('bash', [join(ROOT, 'scripts', 'compose-init.sh'), out], { cwd: ROOT, stdio: 'pipe' })
    const policy = parsePolicy(JSON.parse(readFileSync(join(out, 'policy.json'), 'utf8')), 'compose/policy.json')
    expect(policy.orgs).toEqual(['org-alpha', 'org-beta', 'org-gamma'])
    expect(policy.repositories.get('sample')?.url).toBe('git://git:9418/sample.git')
    const alpha = JSON.parse(readFileSync(join(out, 'builder-alpha', 'member.json'), 'utf8'))
    for (const b of ['alpha', 'beta', 'gamma']) {
      const config = loadNodeConfig(join(out, `builder-${b}`, 'node.json'))
      expect(config.sandbox).toBe('bwrap')
      expect(config.http).toEqual({ host: '0.0.0.0', port: 8080 })
      expect(config.bootstrap).toEqual(b === 'alpha' ? [] : [`/dns4/builder-alpha/tcp/4001/p2p/${alpha.peerId}`])
      expect(readdirSync(join(out, `builder-${b}`))).toEqual(expect.arrayContaining(['builder-key.json', 'peer-key.json', 'node.json', 'policy.json']))
    }
    expect(existsSync(join(out, 'git', 'sample.git', 'HEAD'))).toBe(true)
    const check = spawnSync('docker-compose', ['-f', join(ROOT, 'docker-compose.yml'), 'config', '-q'], { encoding: 'utf8' })
    expect(check.error).toBeUndefined()
    expect(check.stderr).toBe('')
    expect(check.status).toBe(0)
    // Private keys: 0600, and never committed or sent to a Docker build.
    for (const b of ['alpha', 'beta', 'gamma']) {
      for (const f of ['builder-key.json', 'peer-key.json']) expect(statSync(join(out, `builder-${b}`, f)).mode & 0o777, `${b} ${f}`).toBe(0o600)
    }
    const ignored = spawnSync('git', ['check-ignore', '-q', 'compose/builder-alpha/builder-key.json'], { cwd: ROOT })
    expect(ignored.status, 'compose/ is in .gitignore').toBe(0)
    const dockerignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map(l => l.trim())
    expect(dockerignore).toEqual(expect.arrayContaining(['compose/', '**/node_modules/', '**/dist/', '.git/']))
  })

  it('a node whose sandbox cannot mount /proc (Docker\'s masked paths) shows bubblewrap\'s own error and the option that fixes it', async () => {
    const repo = join(work, 'masked-repo')
    createSampleRepo(repo)
    const net = await initNetwork({ dir: join(work, 'masked'), repoUrl: repo, sandbox: 'bwrap', builders: [{ name: 'masked', org: 'm' }] })
    // What Docker does to a container's /proc (a read-only bind over /proc/sys), in a private mount namespace.
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
      'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$0" "$@"', process.execPath, CLI, 'node', '--config', net.nodes[0].config],
    { encoding: 'utf8', timeout: 60_000 })
    expect(r.status, r.stderr).toBe(2)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toContain('bwrap: Can\'t mount proc on /newroot/proc: Operation not permitted')
    expect(r.stderr).toMatch(/systempaths=unconfined/)
    expect(r.stderr).toMatch(/or set "sandbox": "none"/)
  })

  it('gives bubblewrap what it needs inside Docker and nothing more, on a supported Node LTS image', () => {
    const config = spawnSync('docker-compose', ['-f', join(ROOT, 'docker-compose.yml'), 'config'], { encoding: 'utf8' })
    expect(config.status).toBe(0)
    // Resolved services, one block each (docker-compose prints YAML with two-space indentation).
    const services = config.stdout.split(/\n  (?=[a-z][a-z-]*:\n)/).slice(1)
    const builders = services.filter(s => s.startsWith('builder-'))
    expect(builders).toHaveLength(3)
    for (const svc of builders) {
      const name = svc.slice(0, svc.indexOf(':'))
      // systempaths=unconfined: without it Docker's masked /proc paths make bwrap fail to mount
      // /proc (bubblewrap issues #284, #505); seccomp/apparmor for user namespaces.
      for (const opt of ['seccomp=unconfined', 'apparmor=unconfined', 'systempaths=unconfined']) expect(svc, `${name}: ${opt}`).toContain(`- ${opt}`)
      expect(svc, name).not.toMatch(/privileged: true|cap_add/)
      // A sandbox that cannot start is not retried forever.
      expect(svc, name).toMatch(/restart: on-failure:\d+/)
    }
    const from = /^FROM node:(\d+)-/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))
    expect(from, 'Dockerfile FROM node:<major>-…').not.toBeNull()
    const major = Number(from![1])
    // Node 20 left maintenance in April 2026; even majors from 22 on are LTS lines.
    expect(major >= 22 && major % 2 === 0, `node ${major}`).toBe(true)
    expect(readFileSync(join(ROOT, 'Dockerfile'), 'utf8')).toMatch(/apt-get install[^\n]*\bbubblewrap\b[^\n]*\bpasst\b/)
  })
})
