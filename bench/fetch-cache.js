// The fetch phase of a real Node.js project (`npm ci --ignore-scripts` from registry.npmjs.org,
// in the bwrap sandbox's own network namespace) with the node's npm fetch cache warm, next to the
// same fetch phase without the cache, alternated in the same run. Other commits, same lockfile.
//   node bench/fetch-cache.js [--quick]
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DEFAULT_RECIPE_LIMITS } from '@quorate/core'
import { FetchCache, GitMirror, detectSandbox, prepareBuildArea, resolveBuildUser, runBuild } from '@quorate/builder'
import { CACHE, QUICK, fmt, record, secs } from './lib/common.js'

const DEPENDENCIES = QUICK
  ? { express: '4.21.2', lodash: '4.17.21' }
  : { express: '4.21.2', lodash: '4.17.21', typescript: '5.9.3', react: '18.3.1', 'react-dom': '18.3.1', 'date-fns': '3.6.0', zod: '3.23.8', esbuild: '0.24.0' }
const ROUNDS = QUICK ? 1 : 2

// The project and its lockfile (with `resolved` URLs, npm's default), made once and kept.
const project = join(CACHE, `fetch-cache-project-${QUICK ? 'quick' : 'full'}`)
if (!existsSync(join(project, 'package-lock.json'))) {
  mkdirSync(project, { recursive: true })
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'bench-app', version: '1.0.0', private: true, scripts: { build: 'node build.js' }, dependencies: DEPENDENCIES }, null, 2) + '\n')
  writeFileSync(join(project, 'build.js'), `const fs = require('fs'); fs.mkdirSync('dist', { recursive: true })\nfs.writeFileSync('dist/versions.txt', ${JSON.stringify(Object.keys(DEPENDENCIES))}.map(n => n + '@' + require(n + '/package.json').version).join('\\n') + '\\n')\n`)
  const r = spawnSync('npm', ['install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund', '--omit-lockfile-registry-resolved=false'], { cwd: project, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`npm could not write the fixture's lockfile: ${r.stderr}`)
}

const root = mkdtempSync(join(CACHE, 'fetch-cache-'))
chmodSync(root, 0o755)
const git = (cwd, ...args) => {
  const r = spawnSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@example', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@example', GIT_AUTHOR_DATE: '1700000000 +0000', GIT_COMMITTER_DATE: '1700000000 +0000' } })
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`)
  return r.stdout.trim()
}
const repo = join(root, 'repo')
cpSync(project, repo, { recursive: true })
git(repo, 'init', '-q', '-b', 'main')
git(repo, 'add', '.')
git(repo, 'commit', '-q', '-m', 'app')
const commits = [git(repo, 'rev-parse', 'HEAD')]
for (let i = 1; i <= 2 * ROUNDS; i++) {
  git(repo, 'commit', '-q', '--allow-empty', '-m', `change ${i}`)
  commits.push(git(repo, 'rev-parse', 'HEAD'))
}

const user = resolveBuildUser()
const area = await prepareBuildArea({ user, dataDir: join(root, 'data'), defaultDir: join(root, 'data', 'work') })
try {
  if (await detectSandbox() === null) throw new Error('bubblewrap is needed (the fetch cache is used in the sandbox only)')
  const mirror = new GitMirror({ url: repo, dir: join(root, 'mirror.git') })
  await mirror.fetch()
  const cache = new FetchCache({ dir: `${area}-fetch-cache`, user })
  const recipe = { fetch: ['npm', 'ci', '--ignore-scripts', '--no-audit', '--no-fund'], build: ['npm', 'run', 'build'], output: 'dist', outputKind: 'dir' }
  const build = async (commit, withCache) => {
    const t = performance.now()
    const out = await runBuild({ repoId: 'bench-app', commit, ref: 'refs/heads/main', mirror, workDir: join(area, randomUUID()), recipe, limits: { ...DEFAULT_RECIPE_LIMITS, timeoutSeconds: 900 }, sandbox: 'bwrap', ...(withCache ? { fetchCache: cache } : {}) })
    if (!out.ok) throw new Error(`build failed: ${out.reason}\n${out.log.tail}`)
    return { fetchMs: out.durationsMs.fetch, totalMs: performance.now() - t, nar: out.output.narSha256, log: out.log.tail }
  }
  // Fill the cache (not timed as a row): the first commit.
  const cold = await build(commits[0], true)
  console.log(`  cold cache (fills it): fetch phase ${secs(cold.fetchMs)}`)
  const plain = []
  const warm = []
  for (let i = 0; i < ROUNDS; i++) {
    const p = await build(commits[1 + 2 * i], false)
    const w = await build(commits[2 + 2 * i], true)
    if (p.nar !== w.nar || w.nar !== cold.nar) throw new Error('the output differs with and without the cache')
    plain.push(p)
    warm.push(w)
    console.log(`  round ${i + 1}: fetch phase without cache ${secs(p.fetchMs)}, with the warm cache ${secs(w.fetchMs)}`)
  }
  const mean = (xs, k) => xs.reduce((n, x) => n + x[k], 0) / xs.length
  const plainMs = mean(plain, 'fetchMs')
  const warmMs = mean(warm, 'fetchMs')
  const held = /fetch cache after the fetch phase: (\d+) entries, (\d+) bytes/.exec(warm.at(-1).log)
  record({
    id: 'fetch-cache',
    benchmark: `fetch phase of a Node.js project (npm ci, ${Object.keys(DEPENDENCIES).length} direct dependencies, ${held?.[1] ?? '?'} tarballs, ${fmt(Number(held?.[2] ?? 0) / 1e6, 1)} MB) with the warm npm fetch cache`,
    figure: `${secs(warmMs)} (build end to end ${secs(mean(warm, 'totalMs'))})`,
    limit: `${secs(plainMs)} without the cache (end to end ${secs(mean(plain, 'totalMs'))})`,
    ratio: warmMs / plainMs,
    target: '< 1 (the downloads are saved; unpacking into node_modules stays)',
    meets: warmMs < plainMs,
    values: { plainMs, warmMs, coldMs: cold.fetchMs, rounds: ROUNDS, plain: plain.map(x => x.fetchMs), warm: warm.map(x => x.fetchMs), cacheEntries: Number(held?.[1]), cacheBytes: Number(held?.[2]) }
  })
} finally {
  rmSync(root, { recursive: true, force: true })
  rmSync(area, { recursive: true, force: true })
  rmSync(`${area}-fetch-cache`, { recursive: true, force: true })
}
