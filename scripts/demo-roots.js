// The pinned-build-root demo: two builder nodes of two organizations whose hosts have different
// compilers (one node runs in a private mount namespace where the host's gcc is GCC 11, the
// other sees GCC 12) build one C program. Without a root they disagree; with the same pinned
// root (a Debian image with gcc, built once by mmdebstrap and served by a real OCI registry on
// 127.0.0.1) they agree and the commit is trusted; `quorate rebuild` then reproduces it from
// outside the network. Run with `npm run demo:roots` (as root, with bubblewrap, skopeo,
// docker-registry, mmdebstrap and gcc-11 installed; the first run builds the image, ~1-2 min).
import '../packages/network/dist/polyfills.js'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { detectSandbox } from '../packages/builder/dist/index.js'
import { ROOT, commitAll, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli, removeDir } from './devnet.js'
import { debianRootLayout, pushLayout, startRegistry } from './build-root-fixture.js'

const GCC11 = '/usr/bin/x86_64-linux-gnu-gcc-11'
const GCC12 = '/usr/bin/x86_64-linux-gnu-gcc-12'
const t0 = Date.now()
const say = (s) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${s}`)

if (process.getuid?.() !== 0) { console.error('demo:roots needs root (a private mount namespace gives one node another gcc)'); process.exit(2) }
if (await detectSandbox() === null) { console.error('demo:roots needs bubblewrap (apt-get install bubblewrap)'); process.exit(2) }
for (const gcc of [GCC11, GCC12]) if (!existsSync(gcc)) { console.error(`demo:roots needs ${gcc} (apt-get install gcc-11 gcc-12)`); process.exit(2) }

const work = join(ROOT, '.quorate-demo-roots')
removeDir(work)
mkdirSync(work, { recursive: true, mode: 0o755 })

say('building (or reusing) the Debian bookworm build root with mmdebstrap …')
const layout = await debianRootLayout()
say(layout.buildMs > 0 ? `built the image in ${(layout.buildMs / 1000).toFixed(0)} s` : 'the image was cached')
const registry = await startRegistry()
await pushLayout(layout.dir, `${registry.host}/build/bookworm-gcc:demo`)
const image = `${registry.host}/build/bookworm-gcc@${layout.manifestDigest}`
say(`a real OCI registry on ${registry.host} serves ${image}`)

const repoDir = join(work, 'hello-c')
mkdirSync(repoDir)
execFileSync('git', ['init', '-q', '-b', 'main', repoDir])
writeFileSync(join(repoDir, 'hello.c'), '#include <stdio.h>\nint main(void) { printf("hello from a pinned root\\n"); return 0; }\n')
const commit = commitAll(repoDir, 'a C program', 1_700_000_000)
const recipe = { build: ['sh', '-c', 'mkdir -p out && gcc -O2 -o out/hello hello.c'], output: 'out', outputKind: 'dir', timeoutSeconds: 300 }

const net = await initNetwork({ dir: join(work, 'nodes'), repoId: 'hello-host', repoUrl: repoDir, recipe, sandbox: 'bwrap', pollSeconds: 1, threshold: 2, builders: [{ name: 'alpha-1', org: 'alpha' }, { name: 'beta-1', org: 'beta' }] })
const policy = JSON.parse(readFileSync(net.policyFile, 'utf8'))
policy.repositories.push({ ...policy.repositories[0], id: 'hello-root', recipe: { ...recipe, root: { image } } })
writeFileSync(net.policyFile, JSON.stringify(policy, null, 2))
for (const n of net.nodes) {
  const cfg = JSON.parse(readFileSync(n.config, 'utf8'))
  // The root cache under the demo's work dir (a root node's default sits beside its build area in the temp dir).
  cfg.roots = { cacheDir: join(work, `roots-${n.name}`), registries: { [registry.host]: { insecure: true } } }
  writeFileSync(n.config, JSON.stringify(cfg, null, 2))
}
say('policy: the same C program twice: "hello-host" on each host\'s toolchain, "hello-root" with the pinned root')
await startNodeProcess(net.nodes[0], {})
await startNodeProcess(net.nodes[1], { wrap: ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', `mount --bind ${GCC11} ${GCC12} && exec "$@"`, 'sh'] })
say('alpha-1 builds with GCC 12; beta-1 runs where the host\'s gcc is GCC 11')

try {
  const settled = async (repoId, status) => await waitFor(async () => {
    const d = await getJson(`${net.nodes[0].url}/v1/repos/${repoId}/commits/${commit}`)
    return d.decision.status === status ? d : undefined
  }, { timeoutMs: 300_000, intervalMs: 500, what: `${repoId} to be ${status}` })
  const host = await settled('hello-host', 'disputed')
  say(`hello-host: ${host.decision.status}: ${host.decision.summary}`)
  const audit = await runCli(['audit', ...net.nodes.flatMap(n => ['--node', n.url]), '--policy', net.policyFile, '--repo', 'hello-host', '--commit', commit])
  for (const line of audit.stdout.split('\n').filter(l => /environment differs: tools\.(gcc|cc)|no common build root/.test(l))) say(`  audit: ${line.trim()}`)
  const rooted = await settled('hello-root', 'trusted')
  say(`hello-root: ${rooted.decision.status}: narSha256 ${rooted.decision.trusted.narSha256}, supported by ${rooted.decision.trusted.supportingOrgs.join(', ')}`)
  const rebuild = await runCli(['rebuild', '--policy', net.policyFile, '--repo', 'hello-root', '--commit', commit, '--root-cache', join(work, 'rebuild-roots'), '--insecure-registry', registry.host, ...net.nodes.flatMap(n => ['--node', n.url])])
  say(`quorate rebuild (outside the network): ${rebuild.stdout.trim()} — ${rebuild.stderr.split('\n').find(l => /MATCH|MISMATCH/.test(l)) ?? rebuild.stderr.trim()}`)
  process.exitCode = rebuild.code
} finally {
  for (const n of net.nodes) await stopNodeProcess(n)
  await registry.stop()
}
