// Launches a local Quorate network as real OS processes on 127.0.0.1: shared by the demo
// (scripts/demo.js) and the end-to-end tests (test/*.test.ts). Plain ESM JavaScript so the
// demo runs straight after `tsc -b`.
import { spawn, execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
export const ROOT = join(here, '..')
export const CLI = join(ROOT, 'packages', 'cli', 'dist', 'main.js')

/** A free TCP port on 127.0.0.1 (bound once, then released). */
export function freePort () {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

function git (cwd, args, env = {}) {
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 'Quorate Demo', GIT_AUTHOR_EMAIL: 'demo@quorate.invalid', GIT_COMMITTER_NAME: 'Quorate Demo', GIT_COMMITTER_EMAIL: 'demo@quorate.invalid', ...env }
  }).trim()
}

/** The sample project: a reproducible build (sorted, dated tar; SOURCE_DATE_EPOCH-stamped version file). */
export const SAMPLE_RECIPE = { build: ['sh', 'build.sh'], output: 'dist', outputKind: 'dir', timeoutSeconds: 120 }

const BUILD_SH = `#!/bin/sh
# Reproducible: no timestamps but SOURCE_DATE_EPOCH, sorted archive entries, fixed owners.
set -eu
rm -rf dist && mkdir -p dist
cat src/*.js > dist/app.js
printf 'version %s\\nbuilt-at %s\\n' "$(cat VERSION)" "$SOURCE_DATE_EPOCH" > dist/BUILDINFO
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner -cf dist/src.tar src
`

export function createSampleRepo (dir) {
  mkdirSync(join(dir, 'src'), { recursive: true })
  git(dir, ['init', '-q', '-b', 'main'])
  writeFileSync(join(dir, 'build.sh'), BUILD_SH, { mode: 0o755 })
  writeFileSync(join(dir, 'VERSION'), '1.0.0\n')
  writeFileSync(join(dir, 'src', 'greet.js'), "export const greet = (name) => `hello, ${name}`\n")
  writeFileSync(join(dir, 'README.md'), '# sample project built by the Quorate demo\n')
  return commitAll(dir, 'initial sample project', 1767225600)
}

let tick = 0
/** Commits everything in `dir` with a fixed, increasing date; returns the commit id. */
export function commitAll (dir, message, epoch) {
  const date = `${epoch ?? (1767225600 + (++tick) * 3600)} +0000`
  git(dir, ['add', '-A'])
  git(dir, ['commit', '-q', '-m', message], { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date })
  return git(dir, ['rev-parse', 'HEAD'])
}

export function addCommit (dir, file, content, message) {
  mkdirSync(dirname(join(dir, file)), { recursive: true })
  writeFileSync(join(dir, file), content)
  return commitAll(dir, message)
}

/** Runs the quorate CLI and returns { code, stdout, stderr }. */
export function runCli (args, opts = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', d => { stdout += d })
    child.stderr.on('data', d => { stderr += d })
    child.on('close', code => resolve({ code, stdout, stderr }))
  })
}

async function cliOk (args) {
  const r = await runCli(args)
  if (r.code !== 0) throw new Error(`quorate ${args.join(' ')} failed (${r.code}): ${r.stderr}`)
  return r
}

/**
 * Initializes one node directory per builder (real `quorate init`), assembles the policy
 * (real `quorate policy assemble`) and wires bootstrap lists: every node bootstraps to the first.
 * builders: [{ name, org, tamper?: boolean }]
 */
export async function initNetwork ({ dir, builders, repoId = 'sample', repoUrl, recipe = SAMPLE_RECIPE, threshold, sandbox = 'none', pollSeconds = 2 }) {
  mkdirSync(dir, { recursive: true })
  const nodes = []
  for (const b of builders) {
    const nodeDir = join(dir, b.name)
    const p2pPort = await freePort()
    const httpPort = await freePort()
    await cliOk(['init', '--dir', nodeDir, '--name', b.name, '--org', b.org, '--listen', `/ip4/127.0.0.1/tcp/${p2pPort}`, '--http-port', String(httpPort), '--sandbox', sandbox, '--poll-seconds', String(pollSeconds), '--loopback', '--endpoint', `http://127.0.0.1:${httpPort}`])
    const member = JSON.parse(readFileSync(join(nodeDir, 'member.json'), 'utf8'))
    nodes.push({ ...b, dir: nodeDir, config: join(nodeDir, 'node.json'), httpPort, url: `http://127.0.0.1:${httpPort}`, member })
  }
  const recipeFile = join(dir, 'recipe.json')
  writeFileSync(recipeFile, JSON.stringify(recipe, null, 2))
  const policyFile = join(dir, 'policy.json')
  await cliOk(['policy', 'assemble', ...nodes.flatMap(n => ['--member', join(n.dir, 'member.json')]), '--repo', repoId, '--url', repoUrl, '--branch', 'main', '--recipe', recipeFile, ...(threshold !== undefined ? ['--threshold', String(threshold)] : []), '--out', policyFile])
  for (const [i, n] of nodes.entries()) {
    const cfg = JSON.parse(readFileSync(n.config, 'utf8'))
    cfg.policyFile = policyFile
    cfg.bootstrap = i === 0 ? [] : [nodes[0].member.multiaddr]
    if (n.tamper === true) cfg.faultInjection = { tamperOutput: true }
    writeFileSync(n.config, JSON.stringify(cfg, null, 2))
  }
  return { nodes, policyFile, repoId }
}

/** Rewrites a node's config file (node.json): edit(config) changes the parsed object in place. */
export function editConfig (node, edit) {
  const cfg = JSON.parse(readFileSync(node.config, 'utf8'))
  edit(cfg)
  writeFileSync(node.config, JSON.stringify(cfg, null, 2))
}

/**
 * Starts one node process. onLine(node, line) sees every log line. Resolves once the node's
 * HTTP API answers /healthz.
 */
export async function startNodeProcess (node, { onLine, logFormat = 'json', extraArgs = [], wrap = [] } = {}) {
  // wrap: an argv prefix the node runs under (e.g. unshare for a private mount namespace).
  const argv = [...wrap, process.execPath, CLI, 'node', '--config', node.config, '--log-format', logFormat, ...extraArgs]
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
  node.child = child
  node.exited = new Promise(resolve => child.on('exit', (code, signal) => resolve({ code, signal })))
  let buf = ''
  const feed = (d) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      node.log = (node.log ?? '') + line + '\n'
      onLine?.(node, line)
    }
  }
  child.stdout.on('data', feed)
  child.stderr.on('data', feed)
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`node ${node.name} exited with ${child.exitCode}:\n${node.log ?? ''}`)
    try {
      const res = await fetch(`${node.url}/healthz`, { signal: AbortSignal.timeout(1000) })
      if (res.ok) return node
    } catch {}
    await sleep(100)
  }
  throw new Error(`node ${node.name} did not answer on ${node.url} within 30 s:\n${node.log ?? ''}`)
}

export async function stopNodeProcess (node, signal = 'SIGTERM') {
  if (node.child === undefined || node.child.exitCode !== null || node.child.signalCode !== null) return
  node.child.kill(signal)
  const timer = setTimeout(() => node.child.kill('SIGKILL'), 10_000)
  await node.exited
  clearTimeout(timer)
}

export const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

/** Polls fn until it returns a truthy value or the time is up. */
export async function waitFor (fn, { timeoutMs = 60_000, intervalMs = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs
  let last
  while (Date.now() < deadline) {
    try {
      last = await fn()
      if (last) return last
    } catch (err) { last = err }
    await sleep(intervalMs)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`)
}

export async function getJson (url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) })
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`)
  return await res.json()
}

export function removeDir (dir) { rmSync(dir, { recursive: true, force: true }) }
