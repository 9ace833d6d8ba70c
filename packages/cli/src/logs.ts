import { parseArgs } from 'node:util'
import { QuorateError, isCommitSha, isRepoId, parsePolicy, type Policy } from '@quorate/core'
import { loadPolicyFile } from '@quorate/node/config'
import { gatherFromNodes } from './verify.js'
import { nodeClient } from './node-client.js'
import { buildLogRefs, fetchBuildLog, logSources } from './build-logs.js'

interface Io { print: (s: string) => void, printErr: (s: string) => void, usage: (msg: string) => never }

/**
 * `quorate logs`: a commit's build logs, read by the digests its signed attestations carry. A
 * whole log is checked against that digest; one that outgrew the recipe's maxLogBytes comes as
 * its head and tail and is said to be unchecked.
 */
export async function cmdLogs (args: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      node: { type: 'string', multiple: true }, repo: { type: 'string' }, commit: { type: 'string' }, builder: { type: 'string' },
      policy: { type: 'string' }, token: { type: 'string' }
    }
  })
  const nodes = values.node ?? []
  if (nodes.length === 0 || values.repo === undefined || values.commit === undefined) io.usage('logs needs --node URL, --repo ID and --commit SHA')
  if (!isRepoId(values.repo)) io.usage(`--repo ${values.repo} is not a repository id`)
  if (!isCommitSha(values.commit)) io.usage('--commit must be a full lowercase hex commit id')
  const token = values.token ?? process.env.QUORATE_READ_TOKEN
  let policy: Policy
  if (values.policy !== undefined) {
    policy = loadPolicyFile(values.policy)
  } else {
    // Without --policy the first node's policy names the builders and keys (its signatures are still checked).
    const answer = await nodeClient(nodes[0]).get('policy', {}, { timeoutMs: 10_000 })
    policy = parsePolicy(answer.policy, `${nodes[0]}/v1/policy`)
    io.printErr(`(signatures checked against ${nodes[0]}'s policy ${answer.digest.slice(0, 16)}…; give --policy FILE to check against yours)`)
  }
  const evidence = await gatherFromNodes(nodes, values.repo, values.commit)
  if (!evidence.nodes.some(n => n.ok)) throw new QuorateError('HTTP_FAILED', `no node answered for ${values.repo}@${values.commit}: ${evidence.nodes.map(n => `${n.url}: ${n.error ?? ''}`).join('; ')}`)
  let refs = buildLogRefs(policy, values.repo, values.commit, evidence)
  if (values.builder !== undefined) {
    const known = refs.map(r => r.builder)
    refs = refs.filter(r => r.builder === values.builder)
    if (refs.length === 0) throw new QuorateError('NOT_FOUND', `builder "${values.builder}" signed no build or failure of ${values.repo}@${values.commit.slice(0, 12)} that these nodes know${known.length > 0 ? `; builders with a log: ${known.join(', ')}` : ''}`)
  }
  if (refs.length === 0) throw new QuorateError('NOT_FOUND', `no signed build or failure of ${values.repo}@${values.commit.slice(0, 12)} on these nodes yet; try again once a builder has finished`)
  let missing = 0
  for (const ref of refs) {
    const log = await fetchBuildLog(logSources(policy, nodes, ref.builder), ref.logSha256, { token })
    const what = ref.kind === 'build' ? 'build' : `failed build, attempt ${ref.attempt ?? 1}: ${ref.reason ?? ''}`
    if (log === undefined) {
      missing++
      io.printErr(`${ref.builder} (${ref.org}), ${what}: no node serves its log ${ref.logSha256} (a node keeps the logs of its own builds, within its retention)`)
      continue
    }
    const check = log.complete
      ? `matches the signed digest ${ref.logSha256}`
      : `only its first and last bytes are kept (the whole log was ${log.totalBytes} bytes, over the recipe's maxLogBytes), so it cannot be checked against the signed digest ${ref.logSha256}`
    if (refs.length > 1 || values.builder === undefined) io.print(`==> ${ref.builder} (${ref.org}), ${what} <==`)
    io.printErr(`${ref.builder}: log from ${log.from}; ${check}`)
    io.print(log.text.replace(/\n$/, ''))
  }
  return missing === refs.length ? 1 : 0
}
