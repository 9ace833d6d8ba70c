// The Quorate demo: a sample git repository, four builder nodes of four organizations as
// separate processes on 127.0.0.1, one of them a compromised CI. Watch them rebuild each
// commit, gossip signed attestations and reach a quorum; then add a commit and verify it
// the way a deploy pipeline would. Run with `npm run demo`.
import '../packages/network/dist/polyfills.js'
import { join } from 'node:path'
import { detectSandbox } from '../packages/builder/dist/index.js'
import { ROOT, CLI, createSampleRepo, addCommit, initNetwork, startNodeProcess, stopNodeProcess, waitFor, getJson, runCli, removeDir } from './devnet.js'

const CLI_REL = 'packages/cli/dist/main.js'
const color = process.stdout.isTTY ? (c, s) => `\x1b[${c}m${s}\x1b[0m` : (_c, s) => s
const COLORS = [36, 32, 35, 31]
const t0 = Date.now()
const stamp = () => color(90, `[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`)
const say = (s) => console.log(`${stamp()} ${s}`)
// Strings in logs come partly from other signers: never let them move the terminal.
const clean = (s) => String(s).replace(/[\u0000-\u001f\u007f-\u009f]/g, '?')

const work = join(ROOT, '.quorate-demo')
removeDir(work)
const repoDir = join(work, 'sample-repo')

console.log(color(1, '\nQuorate demo: four independent builders, one compromised, and a quorum that is not fooled\n'))
const sandbox = (await detectSandbox()) ?? 'none'
say(sandbox === 'bwrap'
  ? 'builds run in the bubblewrap sandbox (no network, read-only system, no access to the node keys)'
  : color(33, 'bubblewrap is not usable here, so the demo sets "sandbox": "none" explicitly (builds run unisolated; attestations say so). apt-get install bubblewrap to sandbox them.'))

const first = createSampleRepo(repoDir)
const second = addCommit(repoDir, 'src/math.js', 'export const add = (a, b) => a + b\n', 'add math module')
say(`created sample repository ${repoDir} with 2 commits (${first.slice(0, 8)}, ${second.slice(0, 8)})`)

const builders = [
  { name: 'alpha-ci', org: 'alpha-corp' },
  { name: 'beta-builds', org: 'beta-foundation' },
  { name: 'gamma-verify', org: 'gamma-labs' },
  { name: 'delta-ci', org: 'delta-inc', tamper: true }
]
const net = await initNetwork({ dir: join(work, 'nodes'), builders, repoUrl: repoDir, sandbox, pollSeconds: 2 })
const policy = await getPolicySummary(net.policyFile)
say(`initialized ${builders.length} nodes (quorate init: builder key, peer key, config each) and the network policy (quorate policy assemble): ${policy}`)
say(color(31, 'delta-ci plays a compromised CI: it builds honestly, then slips a change into its output before signing'))

const interesting = new Set(['ref moved', 'build started', 'build succeeded', 'build failed', 'network peer:connect', 'network started', 'equivocation', 'poll failed', 'fault injection', 'sandbox disabled'])
function onLine (node, line) {
  let e
  try { e = JSON.parse(line) } catch { return say(`${node.tag} ${clean(line)}`) }
  if (e.level === 'error') return say(`${node.tag} ${color(31, clean(e.event))} ${clean(e.error ?? '')}`)
  if (!interesting.has(e.event)) return
  const detail = e.event === 'ref moved' ? `${e.ref} ${e.from} -> ${e.to} (${e.newCommits} new)`
    : e.event === 'build started' ? `${e.commit}`
      : e.event === 'build succeeded' ? `${e.commit} narSha256 ${String(e.narSha256).slice(0, 16)}… in ${e.ms} ms (checkout ${e.checkout}, build ${e.build}, hash ${e.hash})`
        : e.event === 'network peer:connect' ? `connected to ${String(e.peer ?? e.peerId ?? '').slice(-8)}`
          : Object.entries(e).filter(([k]) => !['time', 'level', 'node', 'event'].includes(k)).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')
  say(`${node.tag} ${e.event}: ${clean(detail)}`)
}

net.nodes.forEach((n, i) => { n.tag = color(COLORS[i], n.name.padEnd(12)) })
let stopped = false
async function stopAll () {
  if (stopped) return
  stopped = true
  await Promise.all(net.nodes.map(n => stopNodeProcess(n)))
}
process.on('SIGINT', () => { stopAll().then(() => process.exit(130)) })

try {
  await Promise.all(net.nodes.map(async n => {
    await startNodeProcess(n, { onLine })
    say(`${n.tag} started (pid ${n.child.pid}), API ${n.url}`)
  }))
  const observer = net.nodes[0]
  say(`dashboard (while the demo runs): ${observer.url}/ ; metrics: ${observer.url}/metrics`)
  const shown = new Map()
  async function showDecisions () {
    const { commits } = await getJson(`${observer.url}/v1/repos/${net.repoId}/commits`)
    for (const c of commits) {
      const key = `${c.status}/${c.narSha256}/${c.supportingOrgs.join(',')}`
      if (shown.get(c.commit) === key) continue
      shown.set(c.commit, key)
      const detail = await getJson(`${observer.url}/v1/repos/${net.repoId}/commits/${c.commit}`)
      const d = detail.decision
      const st = d.status === 'trusted' ? color(32, 'TRUSTED ') : d.status === 'disputed' ? color(31, 'DISPUTED') : d.status === 'failed' ? color(31, 'FAILED  ') : color(33, 'pending ')
      say(`${color(1, 'decision')} ${c.commit.slice(0, 12)} ${st} ${d.trusted ? `digest ${d.trusted.narSha256.slice(0, 16)}… agreed by ${d.trusted.supportingOrgs.join(', ')}` : clean(d.summary)}`)
      for (const x of d.dissenters) say(`           dissent: ${clean(x.builder)} (${clean(x.org)}) signed ${x.narSha256.slice(0, 16)}… — not counted toward the trusted digest`)
    }
    return commits
  }
  // Done when the three honest organizations agree and the compromised CI's dissent is on record.
  const allTrusted = async (ids) => {
    await showDecisions()
    for (const id of ids) {
      const { decision } = await getJson(`${observer.url}/v1/repos/${net.repoId}/commits/${id}`)
      if (decision.status !== 'trusted' || decision.trusted.supportingOrgs.length !== 3 || !decision.dissenters.some(d => d.builder === 'delta-ci')) return false
    }
    return true
  }
  await waitFor(() => allTrusted([first, second]), { timeoutMs: 180_000, intervalMs: 300, what: 'the first two commits to be trusted' })
  say(color(1, 'both commits trusted by the three honest organizations; the compromised CI is on record as dissenting'))

  const landed = Date.now()
  const third = addCommit(repoDir, 'src/farewell.js', 'export const bye = (name) => `bye, ${name}`\n', 'add farewell')
  say(`${color(1, 'new commit')} ${third.slice(0, 12)} pushed to main; the nodes poll every 2 s`)
  await waitFor(() => allTrusted([third]), { timeoutMs: 120_000, intervalMs: 200, what: 'the new commit to be trusted' })
  say(`${color(1, 'commit to trusted decision')}: ${((Date.now() - landed) / 1000).toFixed(1)} s`)

  const verifyArgs = ['verify', ...net.nodes.slice(0, 3).flatMap(n => ['--node', n.url]), '--policy', net.policyFile, '--repo', net.repoId, '--commit', third]
  console.log(`\n${color(1, 'A deploy pipeline gates on this (it verifies every signature itself against its own copy of the policy):')}\n`)
  console.log(`  node ${CLI_REL} ${verifyArgs.join(' ')}\n`)
  const r = await runCli(verifyArgs)
  console.log(`  ${r.stderr.trim()}\n  exit code ${r.code}\n`)
  if (r.code !== 0) throw new Error('verify did not pass')
} finally {
  await stopAll()
  const left = net.nodes.filter(n => n.child && n.child.exitCode === null && n.child.signalCode === null)
  say(left.length === 0 ? 'all node processes stopped; nothing left running' : color(31, `processes still running: ${left.map(n => n.child.pid).join(', ')}`))
  console.log(color(90, `demo files (repository, node data, logs) are in ${work}; run "npm run demo" again to start fresh`))
}

async function getPolicySummary (file) {
  const r = await runCli(['policy', 'check', file])
  return r.stdout.split('\n')[1]?.trim() ?? ''
}
