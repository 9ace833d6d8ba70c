#!/usr/bin/env node
import { parseArgs } from 'node:util'
import { mkdirSync, writeFileSync, existsSync, chmodSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { randomBytes } from 'node:crypto'
import {
  QuorateError, isQuorateError, escapeForDisplay, keyPairFromSeed, encodeBuilderKeyFile
} from '@quorate/core'
import { escapeForTerminal } from '@quorate/node/logger'
import { loadPolicyFile } from '@quorate/node/config'
import { commandHelp } from './help.js'
import { assemblePolicy } from './policy-assemble.js'

// Heavy packages (libp2p, the builder) load only for the commands that use them, so that
// `quorate verify` in a deploy pipeline starts fast.
const nodePkg = async (): Promise<typeof import('@quorate/node')> => await import('@quorate/node')

const USAGE = `quorate: a decentralized network of reproducible-build verifiers

Usage:
  quorate init --dir DIR --name BUILDER --org ORG [--listen MULTIADDR] [--http-host HOST] [--http-port N] [--bootstrap MULTIADDR]...
               [--sandbox bwrap|none] [--endpoint URL] [--policy FILE] [--poll-seconds N] [--loopback] [--force]
  quorate policy assemble --member FILE... (--repo ID --url GIT_URL [--branch NAME]... [--tag GLOB]... --recipe FILE)... [--repos FILE]
                          [--threshold N] [--mode majority|unanimous] [--out FILE]
  quorate policy check FILE
  quorate policy digest FILE
  quorate node --config FILE [--log-format text|json] [--debug]
  quorate verify --node URL [--node URL]... --policy FILE --repo ID --commit SHA [--digest HEX] [--ref REF] [--artifact FILE] [--image]
                 [--policy-digest HEX] [--wait [--timeout SECONDS]] [--json] [--vsa-key KEYFILE --vsa-out FILE] [--token TOKEN]
  quorate verify --bundle FILE --policy FILE [--repo ID] [--commit SHA] [--digest HEX] [--ref REF] [--json] [--vsa-key KEYFILE --vsa-out FILE]
  quorate bundle --node URL [--node URL]... --repo ID --commit SHA [--format json|intoto-jsonl] [--out FILE]
  quorate fetch --node URL [--node URL]... --policy FILE --repo ID (--commit SHA [--ref REF] | --ref REF) (--out DIR | --oci DIR) [--token TOKEN]
                [--policy-digest HEX] [--json]
  quorate audit --node URL [--node URL]... --policy FILE [--repo ID] [--commit SHA] [--all] [--limit N] [--json | --markdown]
  quorate audit --node URL... --policy FILE [--repo ID] --diffoscope COMMIT [--builders A,B] [--out FILE]
  quorate latest --node URL... --repo ID --ref REF [--policy FILE] [--json]
  quorate which NARSHA256 --node URL... [--json]   (exit 0 only when the digest is a commit's trusted result)
  quorate key rotate --config FILE
  quorate key show [--pem | --json] (--config FILE | --key FILE | --public HEX)
  quorate key generate --out FILE [--force]
  quorate backup --config FILE --out BACKUP.tar.gz
  quorate restore --config FILE --from BACKUP.tar.gz [--force]
  quorate digest PATH [--json]
  quorate rebuild --policy FILE --repo ID --commit SHA [--out DIR] [--node URL]... [--root-cache DIR] [--insecure-registry HOST:PORT]... [--json]
  quorate status --node URL [--json]
  quorate logs --node URL... --repo ID --commit SHA [--builder NAME] [--policy FILE] [--token TOKEN]
  quorate rebuild-request --node URL --repo ID --commit SHA [--token-file FILE] [--json]   (admin: build again after a final failure)

Every command has its own help with examples: quorate COMMAND --help. quorate --version prints the version.
Errors are one sentence and an exit code; add --debug for a stack trace.

Exit codes of verify: 0 trusted, 1 disputed, failed (the build fails everywhere) or a failed check (--digest, --ref, --artifact, --image),
3 pending (a quorum is still reachable; also --ref not yet seen by a quorum while organizations are open, and --wait timed out),
2 usage/config error (also a --policy-digest mismatch) or no node answered.`

function usage (msg: string): never {
  throw new QuorateError('USAGE', `${msg}\n\n${USAGE}`)
}

// Every line the CLI writes goes through core's display escaping: a signer's bidi or C1 control
// (U+202E, U+009B) never reaches the terminal raw, and JSON output stays the same JSON.
function print (s: string): void { process.stdout.write(escapeForDisplay(s, { keepLayout: true }) + '\n') }
function printErr (s: string): void { process.stderr.write(escapeForDisplay(s, { keepLayout: true }) + '\n') }

async function cmdInit (args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      dir: { type: 'string' }, name: { type: 'string' }, org: { type: 'string' }, listen: { type: 'string' },
      'http-port': { type: 'string' }, 'http-host': { type: 'string' }, bootstrap: { type: 'string', multiple: true },
      sandbox: { type: 'string' }, endpoint: { type: 'string' }, policy: { type: 'string' }, force: { type: 'boolean' },
      'poll-seconds': { type: 'string' }, loopback: { type: 'boolean' }
    }
  })
  if (values.dir === undefined || values.name === undefined || values.org === undefined) usage('init needs --dir, --name and --org')
  const dir = resolve(values.dir)
  const keyFile = join(dir, 'builder-key.json')
  if (existsSync(keyFile) && values.force !== true) throw new QuorateError('USAGE', `${keyFile} already exists; a builder keeps its key (use --force only to replace it deliberately)`)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const kp = keyPairFromSeed(new Uint8Array(randomBytes(32)))
  writeFileSync(keyFile, JSON.stringify(encodeBuilderKeyFile(kp), null, 2) + '\n', { mode: 0o600 })
  chmodSync(keyFile, 0o600)
  const peerKeyFile = join(dir, 'peer-key.json')
  const { initPeerKeyFile } = await import('@quorate/node/stopped-node')
  const peerId = await initPeerKeyFile(peerKeyFile)
  chmodSync(peerKeyFile, 0o600) // also when --force replaced a file created with looser permissions
  const listen = values.listen ?? '/ip4/0.0.0.0/tcp/4001'
  const httpPort = Number(values['http-port'] ?? 8080)
  if (!Number.isInteger(httpPort) || httpPort < 0 || httpPort > 65535) usage('--http-port must be a port number')
  if (values.sandbox !== undefined && values.sandbox !== 'bwrap' && values.sandbox !== 'none') usage('--sandbox must be bwrap or none')
  const config = {
    name: values.name,
    dataDir: 'data',
    builderKeyFile: 'builder-key.json',
    peerKeyFile: 'peer-key.json',
    policyFile: values.policy ?? 'policy.json',
    listen: [listen],
    bootstrap: values.bootstrap ?? [],
    http: { host: values['http-host'] ?? '127.0.0.1', port: httpPort },
    sandbox: values.sandbox ?? 'bwrap',
    pollIntervalSeconds: Number(values['poll-seconds'] ?? 30),
    ...(values.loopback === true ? { loopbackNetwork: true } : {})
  }
  writeFileSync(join(dir, 'node.json'), JSON.stringify(config, null, 2) + '\n')
  // This data directory starts the new key's logs: the node need not fetch them from peers first.
  mkdirSync(join(dir, config.dataDir), { recursive: true, mode: 0o700 })
  writeFileSync(join(dir, config.dataDir, 'NEW_KEY'), kp.keyid + '\n')
  const multiaddr = `${listen}/p2p/${peerId}`
  const member = { name: values.name, org: values.org, publicKey: kp.publicKeyHex, keyid: kp.keyid, peerId, multiaddr, ...(values.endpoint !== undefined ? { endpoint: values.endpoint } : {}) }
  writeFileSync(join(dir, 'member.json'), JSON.stringify(member, null, 2) + '\n')
  print(`initialized builder "${values.name}" of organization "${values.org}" in ${dir}`)
  print(`  public key: ${kp.publicKeyHex}`)
  print(`  keyid:      ${kp.keyid}`)
  print(`  peer id:    ${peerId}`)
  print(`  multiaddr:  ${multiaddr}${listen.includes('/0.0.0.0/') ? '  (replace 0.0.0.0 with an address the other nodes can reach)' : ''}`)
  print(`  builder key: ${keyFile} (mode 0600: keep it secret, back it up offline)`)
  print(`  peer key:    ${peerKeyFile} (mode 0600)`)
  print(`  config:      ${join(dir, 'node.json')}`)
  print(`  member file: ${join(dir, 'member.json')} (public: share this one)`)
  print(`next: send member.json to whoever assembles the network policy ("quorate policy assemble"), put the policy at ${join(dir, config.policyFile)}, then run "quorate node --config ${join(dir, 'node.json')}"`)
  return 0
}

async function cmdPolicy (args: string[]): Promise<number> {
  const sub = args[0]
  if (sub === 'check') {
    if (args[1] === undefined) usage('policy check needs a FILE')
    const p = loadPolicyFile(args[1])
    print(`${args[1]}: valid policy, digest ${p.digest}`)
    print(`  ${p.builders.size} builders in ${p.orgs.length} organizations (${p.orgs.join(', ')}); quorum: ${p.threshold} organizations, ${p.mode}`)
    for (const r of p.repositories.values()) print(`  repository ${r.id}: branches ${r.branches.join(', ')}${r.tags.length > 0 ? `, tags ${r.tags.join(', ')}` : ''}; recipe ${r.recipeDigest ?? 'from .quorate/recipe.json'}`)
    return 0
  }
  if (sub === 'digest') {
    if (args[1] === undefined || args.length > 2) usage('policy digest takes one FILE')
    print(loadPolicyFile(args[1]).digest)
    return 0
  }
  if (sub !== 'assemble') usage('policy takes "assemble", "check" or "digest"')
  return assemblePolicy(args.slice(1), { print: text => process.stdout.write(text), printErr, usage })
}

async function cmdNode (args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, 'log-format': { type: 'string' }, debug: { type: 'boolean' } } })
  if (values.config === undefined) usage('node needs --config FILE (written by "quorate init")')
  const format = values['log-format'] ?? 'text'
  if (format !== 'text' && format !== 'json') usage('--log-format must be text or json')
  const { loadNodeConfig, createLogger, startNode } = await nodePkg()
  const config = loadNodeConfig(values.config)
  const logger = createLogger({ format, name: config.name, debug: values.debug === true })
  const node = await startNode(config, logger)
  // The line scripts wait for: where the API listens.
  logger.info('ready', { http: node.httpUrl, peerId: node.network.peerId, multiaddrs: node.network.multiaddrs().join(' ') })
  await new Promise<void>(resolve => {
    const stop = (): void => { resolve() }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  await node.stop()
  return 0
}

async function cmdVerify (args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      node: { type: 'string', multiple: true }, policy: { type: 'string' }, repo: { type: 'string' }, commit: { type: 'string' },
      digest: { type: 'string' }, json: { type: 'boolean' }, wait: { type: 'boolean' }, timeout: { type: 'string' }, ref: { type: 'string' },
      'policy-digest': { type: 'string' }, artifact: { type: 'string' }, image: { type: 'boolean' }, bundle: { type: 'string' },
      'vsa-key': { type: 'string' }, 'vsa-out': { type: 'string' }, token: { type: 'string' }
    }
  })
  if ((values['vsa-key'] === undefined) !== (values['vsa-out'] === undefined)) usage('--vsa-key KEYFILE and --vsa-out FILE go together (the key signs the verification summary written to FILE)')
  const vsaKey = values['vsa-key'] !== undefined ? (await import('@quorate/node/config')).loadBuilderKey(values['vsa-key']) : undefined
  if (values.policy === undefined) usage('verify needs --policy FILE (your own copy of the network policy)')
  if (values.bundle === undefined && (values.repo === undefined || values.commit === undefined || values.node === undefined)) usage('verify needs --node, --repo and --commit (or --bundle FILE)')
  if (values.bundle !== undefined && values.node !== undefined) usage('give either --bundle (offline) or --node, not both')
  const policy = loadPolicyFile(values.policy)
  if (values['policy-digest'] !== undefined && values['policy-digest'] !== policy.digest) {
    throw new QuorateError('CONFIG_INVALID', `${values.policy}: policy digest is ${policy.digest}, not the pinned --policy-digest ${values['policy-digest']}; get the agreed policy file`)
  }
  if (values.ref !== undefined && !values.ref.startsWith('refs/')) usage('--ref takes a full ref name such as refs/heads/main')
  if (values.timeout !== undefined && values.wait !== true) usage('--timeout only applies with --wait (how long to keep asking while the answer is pending)')
  const timeoutSeconds = Number(values.timeout ?? 600)
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) usage('--timeout takes a number of seconds')
  const { verifyUntilFinal, verifyReportJson, readBundle, evaluate, checkVerifyArgs, sha256File } = await import('./verify.js')
  const artifact = values.artifact !== undefined ? { path: values.artifact, sha256: sha256File(values.artifact) } : undefined
  const checks = { expectDigest: values.digest, ref: values.ref, artifact, image: values.image === true, policyDigest: values['policy-digest'] }
  let report
  const bundle = values.bundle !== undefined ? readBundle(values.bundle, values.repo, values.commit) : undefined
  if (bundle !== undefined) {
    checkVerifyArgs(bundle.repoId, bundle.commit, policy, values.digest)
    if (artifact !== undefined) usage('--artifact needs --node (the file list is fetched from nodes)')
    report = evaluate(policy, bundle.repoId, bundle.commit, bundle, checks)
    if (report.exitCode === 0) {
      report.message += `. Offline, from ${bundle.envelopes.length} envelopes in ${values.bundle}: with a threshold above half of the organizations, no other result can be trusted under this policy; envelopes missing from the bundle could only show a conflict (pending or disputed), never another trusted digest`
    }
  } else {
    report = await verifyUntilFinal({ nodes: values.node!, policy, repoId: values.repo!, commit: values.commit!, ...checks }, {
      wait: values.wait === true,
      timeoutMs: timeoutSeconds * 1000,
      onProgress: message => printErr(`waiting: ${escapeForTerminal(message)}`)
    })
  }
  let vsaLine: string | undefined
  if (vsaKey !== undefined) {
    const { writeVsa } = await import('./vsa.js')
    const signed = writeVsa(values['vsa-out']!, { report, policy, timeVerified: new Date().toISOString(), version: version(), sources: values.bundle !== undefined ? [values.bundle] : values.node! }, vsaKey)
    vsaLine = `verification summary (SLSA VSA, ${report.exitCode === 0 ? 'PASSED' : 'FAILED'}) signed by keyid ${vsaKey.keyid} written to ${values['vsa-out']!} (envelope ${signed.id.slice(0, 16)}…)`
  }
  for (const w of report.warnings) printErr(`WARNING: ${escapeForTerminal(w)}`)
  printErr(`${report.exitCode === 0 ? 'PASSED' : 'FAILED'}: ${escapeForTerminal(report.message)}`)
  if (report.status === 'failed') {
    // The reason alone rarely explains a failure: show the end of each failing builder's log.
    // The envelopes again (the report keeps only the decision); a bundle was read once above.
    const { gatherFromNodes } = await import('./verify.js')
    const { failureLogTails } = await import('./build-logs.js')
    const repoId = report.repoId
    const evidence = bundle ?? await gatherFromNodes(values.node!, repoId, report.commit)
    for (const t of await failureLogTails(policy, values.node ?? [], repoId, report.commit, evidence, { token: values.token ?? process.env.QUORATE_READ_TOKEN, ...(bundle !== undefined ? { decision: report.decision } : {}) })) printErr(t.text)
  }
  if (vsaLine !== undefined) printErr(vsaLine)
  // With --json, stdout carries exactly one JSON document (the image references are in it).
  if (values.json === true) print(JSON.stringify(verifyReportJson(report), null, 2))
  else if (values.image === true && report.exitCode === 0) for (const img of report.images) print(`${escapeForTerminal(img.name)}@sha256:${img.sha256}`)
  return report.exitCode
}

async function cmdFetch (args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      node: { type: 'string', multiple: true }, policy: { type: 'string' }, repo: { type: 'string' }, commit: { type: 'string' }, ref: { type: 'string' },
      out: { type: 'string' }, oci: { type: 'string' }, 'policy-digest': { type: 'string' }, json: { type: 'boolean' }, token: { type: 'string' }
    }
  })
  if (values.node === undefined || values.policy === undefined || values.repo === undefined) usage('fetch needs --node URL (one or more), --policy FILE and --repo ID')
  if (values.commit === undefined && values.ref === undefined) usage('fetch needs --commit SHA, or --ref REF for the latest trusted commit on a ref')
  if ((values.out === undefined) === (values.oci === undefined)) usage('fetch needs --out DIR (the output tree) or --oci DIR (an OCI image layout), one of them')
  if (values.ref !== undefined && !values.ref.startsWith('refs/')) usage('--ref takes a full ref name such as refs/heads/main')
  const policy = loadPolicyFile(values.policy)
  if (values['policy-digest'] !== undefined && values['policy-digest'] !== policy.digest) {
    throw new QuorateError('CONFIG_INVALID', `${values.policy}: policy digest is ${policy.digest}, not the pinned --policy-digest ${values['policy-digest']}; get the agreed policy file`)
  }
  const { checkVerifyArgs } = await import('./verify.js')
  checkVerifyArgs(values.repo, values.commit ?? '0'.repeat(40), policy)
  const { fetchTrustedOutput } = await import('./fetch.js')
  const r = await fetchTrustedOutput({
    nodes: values.node, policy, repoId: values.repo, ...(values.commit !== undefined ? { commit: values.commit } : {}), ...(values.ref !== undefined ? { ref: values.ref } : {}),
    out: values.oci ?? values.out!, oci: values.oci !== undefined,
    ...((values.token ?? process.env.QUORATE_READ_TOKEN) !== undefined ? { token: values.token ?? process.env.QUORATE_READ_TOKEN } : {}),
    onProgress: m => printErr(`fetch: ${escapeForTerminal(m)}`)
  })
  printErr(`${r.exitCode === 0 ? 'PASSED' : 'FAILED'}: ${escapeForTerminal(r.message)}`)
  if (values.json === true) {
    print(JSON.stringify({ schema: 'https://quorate.dev/fetch-report/v1', exitCode: r.exitCode, repoId: values.repo, commit: r.commit ?? null, narSha256: r.narSha256 ?? null, out: resolve(values.oci ?? values.out!), files: r.files ?? 0, bytes: r.bytes ?? 0, servedBy: r.servedBy ?? {}, rejected: r.rejected, images: r.images ?? [], message: r.message }, null, 2))
  } else if (r.images !== undefined) {
    for (const img of r.images) print(escapeForTerminal(img))
  }
  return r.exitCode
}

async function cmdBundle (args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { node: { type: 'string', multiple: true }, repo: { type: 'string' }, commit: { type: 'string' }, out: { type: 'string' }, format: { type: 'string' } } })
  if (values.node === undefined || values.repo === undefined || values.commit === undefined) usage('bundle needs --node, --repo and --commit')
  const format = values.format ?? 'json'
  if (format !== 'json' && format !== 'intoto-jsonl') usage('--format takes json (our bundle, with the policy digest) or intoto-jsonl (one envelope per line)')
  const { gatherFromNodes, BUNDLE_TYPE } = await import('./verify.js')
  const evidence = await gatherFromNodes(values.node, values.repo, values.commit)
  if (!evidence.nodes.some(n => n.ok)) throw new QuorateError('HTTP_FAILED', `no node answered (${evidence.nodes.map(n => `${n.url}: ${n.error ?? ''}`).join('; ')})`)
  const { nodeClient } = await import('./node-client.js')
  const policyDigest = (await nodeClient(values.node[0]).get('policy', {})).digest
  const seen = new Set<string>()
  const envelopes = evidence.envelopes.filter(e => { const k = JSON.stringify(e); if (seen.has(k)) return false; seen.add(k); return true })
  if (envelopes.length === 0) {
    printErr(`FAILED: no node knows anything about ${values.repo}@${values.commit} yet (no attestation, failure or ref observation); no bundle written`)
    return 3
  }
  const bundle = { type: BUNDLE_TYPE, repoId: values.repo, commit: values.commit, policyDigest, createdAt: new Date().toISOString(), envelopes, equivocationProofs: evidence.proofs }
  const text = format === 'intoto-jsonl' ? (await import('./bundle-format.js')).intotoJsonl(envelopes, evidence.proofs) : JSON.stringify(bundle, null, 2) + '\n'
  if (values.out !== undefined) writeFileSync(values.out, text)
  else process.stdout.write(text)
  printErr(`bundle of ${envelopes.length} envelopes and ${evidence.proofs.length} equivocation proofs for ${values.repo}@${values.commit.slice(0, 12)} (policy ${policyDigest.slice(0, 16)}…); check it offline with "quorate verify --bundle FILE --policy FILE"`)
  return 0
}

async function cmdAudit (args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      node: { type: 'string', multiple: true }, policy: { type: 'string' }, repo: { type: 'string' }, commit: { type: 'string' },
      json: { type: 'boolean' }, markdown: { type: 'boolean' }, diffoscope: { type: 'string' }, all: { type: 'boolean' }, limit: { type: 'string' },
      builders: { type: 'string' }, out: { type: 'string' }
    }
  })
  if (values.node === undefined || values.policy === undefined) usage('audit needs --node URL (one or more) and --policy FILE')
  const policy = loadPolicyFile(values.policy)
  const audit = await import('./audit.js')
  if (values.diffoscope !== undefined) {
    const repoId = values.repo ?? await audit.findCommitRepository(policy, values.node, values.diffoscope)
    const pair = values.builders?.split(',').map(b => b.trim())
    if (pair !== undefined && (pair.length !== 2 || pair.some(b => b === ''))) usage('--builders takes two builder names: --builders a,b')
    const finding = await audit.auditCommit(policy, values.node, repoId, values.diffoscope)
    const r = await audit.diffoscopeCommit(finding, policy, values.node, pair !== undefined ? { builders: [pair[0], pair[1]] } : {})
    if (values.out !== undefined) {
      writeFileSync(values.out, r.output)
      printErr(`diffoscope report written to ${values.out}`)
    } else {
      process.stdout.write(r.output)
    }
    for (const p of r.pairs) printErr(`${p.a} against ${p.b}: ${p.exitCode === 0 ? 'identical' : p.exitCode === 1 ? 'different' : 'diffoscope failed'}`)
    return r.exitCode
  }
  const repos = values.repo !== undefined ? [values.repo] : [...policy.repositories.keys()]
  const findings = []
  const limit = Number(values.limit ?? 50)
  for (const repoId of repos) {
    let commits: string[]
    if (values.commit !== undefined) commits = [values.commit]
    else {
      const seen = new Set<string>()
      const { nodeClient } = await import('./node-client.js')
      for (const url of values.node) {
        try {
          for (const c of (await nodeClient(url).get('commits', { repo: repoId })).commits) seen.add(c.commit)
        } catch {}
      }
      commits = [...seen].slice(0, limit)
    }
    for (const commit of commits) {
      const f = await audit.auditCommit(policy, values.node, repoId, commit)
      if (values.all === true || values.commit !== undefined || audit.hasFindings(f)) findings.push(f)
    }
  }
  if (values.json === true) process.stdout.write(audit.renderJson(findings, policy.digest))
  else if (values.markdown === true) process.stdout.write(audit.renderMarkdown(findings))
  else process.stdout.write(audit.renderText(findings))
  return findings.some(f => audit.hasFindings(f)) ? 1 : 0
}

async function cmdLatest (args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { node: { type: 'string', multiple: true }, repo: { type: 'string' }, ref: { type: 'string' }, policy: { type: 'string' }, json: { type: 'boolean' } } })
  if (values.node === undefined || values.repo === undefined || values.ref === undefined) usage('latest needs --node, --repo and --ref (e.g. refs/heads/main)')
  const policy = values.policy !== undefined ? loadPolicyFile(values.policy) : undefined
  if (policy !== undefined && !policy.repositories.has(values.repo)) usage(`--repo: "${values.repo}" is not in the policy ${values.policy}`)
  let answer: { commit: string, narSha256: string } | undefined
  let unknownRepo = 0
  const { nodeClient, NodeHttpError } = await import('./node-client.js')
  for (const url of values.node) {
    try {
      answer = await nodeClient(url).get('latest', { repo: values.repo }, { query: { ref: values.ref } })
      break
    } catch (err) {
      if (err instanceof NodeHttpError && err.status === 404 && /unknown repository/.test(err.message)) unknownRepo++
    }
  }
  if (answer === undefined && unknownRepo === values.node.length) usage(`--repo: no node knows a repository "${values.repo}" (check the id against the policy)`)
  if (answer === undefined) { printErr(`FAILED: no node knows a trusted commit that a quorum saw on ${values.ref}`); return 3 }
  if (values.policy !== undefined) {
    // Never take the node's word for it: check the commit and the ref with the caller's policy.
    const { verifyCommit } = await import('./verify.js')
    const report = await verifyCommit({ nodes: values.node, policy: policy!, repoId: values.repo, commit: answer.commit, ref: values.ref })
    printErr(`${report.exitCode === 0 ? 'PASSED' : 'FAILED'}: ${escapeForTerminal(report.message)}`)
    if (report.exitCode !== 0) return report.exitCode
  }
  if (values.json === true) print(JSON.stringify(answer, null, 2))
  else print(`${answer.commit} ${answer.narSha256}`)
  return 0
}

async function cmdWhich (args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { node: { type: 'string', multiple: true }, json: { type: 'boolean' } } })
  if (positionals.length !== 1 || values.node === undefined) usage('which takes a narSha256 and --node URL')
  const digest = positionals[0]
  const found = new Map<string, { repoId: string, commit: string, status: string, trusted: boolean }>()
  const { nodeClient } = await import('./node-client.js')
  for (const url of values.node) {
    try {
      for (const c of (await nodeClient(url).get('digest', { narSha256: digest })).commits) found.set(`${c.repoId}@${c.commit}`, c)
    } catch {}
  }
  // Per digest, not per commit: a tampered build of a trusted commit is a dissent, never "trusted".
  const roleOf = (c: { status: string, trusted: boolean }): string => c.trusted ? 'trusted result' : c.status === 'trusted' ? 'dissent (the quorum trusts another result for this commit)' : `not counted (the commit is ${c.status})`
  const commits = [...found.values()].map(c => ({ ...c, role: c.trusted ? 'trusted' : c.status === 'trusted' ? 'dissent' : 'not-counted' }))
  if (values.json === true) print(JSON.stringify({ narSha256: digest, commits }, null, 2))
  else for (const c of found.values()) print(`${c.repoId}@${c.commit} ${roleOf(c)}`)
  if (found.size === 0) printErr(`no node knows a build with narSha256 ${digest}`)
  else if (!commits.some(c => c.role === 'trusted')) printErr(`narSha256 ${digest} is not the trusted result of any commit these nodes know`)
  // 0 only when the digest is a trusted result somewhere: a script must not take a dissent for a pass.
  return commits.some(c => c.role === 'trusted') ? 0 : 1
}

async function cmdKey (args: string[]): Promise<number> {
  if (args[0] === 'show' || args[0] === 'generate') {
    const { keyShow, keyGenerate } = await import('./key-show.js')
    return await (args[0] === 'show' ? keyShow : keyGenerate)(args.slice(1), { print, usage })
  }
  if (args[0] !== 'rotate') usage('key takes "rotate", "show" or "generate"')
  const { values } = parseArgs({ args: args.slice(1), options: { config: { type: 'string' } } })
  if (values.config === undefined) usage('key rotate needs --config FILE of the (stopped) node')
  const { loadNodeConfig, loadBuilderKey } = await import('@quorate/node/config')
  const config = loadNodeConfig(values.config)
  const { rotateBuilderKey } = await import('@quorate/node/stopped-node')
  const r = await rotateBuilderKey({ dataDir: config.dataDir, keyFile: config.builderKeyFile, oldKey: loadBuilderKey(config.builderKeyFile), policy: loadPolicyFile(config.policyFile) })
  print(`rotated the builder key of "${r.policyEntry.name}": new keyid ${r.newKey.keyid}, public key ${r.newKey.publicKeyHex}`)
  print(`re-signed ${r.resigned} stored envelopes under the new key (a new log); the old key is kept in ${r.retiredKeyFile}`)
  print('every member must now use this entry for the builder in the network policy (the old key marked revoked: nothing it signed counts any more):')
  print(JSON.stringify(r.policyEntry, null, 2))
  print('the node publishes the re-signed envelopes when it starts with the updated policy')
  return 0
}

async function cmdBackup (args: string[], restore: boolean): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, out: { type: 'string' }, from: { type: 'string' }, force: { type: 'boolean' } } })
  if (values.config === undefined) usage(`${restore ? 'restore' : 'backup'} needs --config FILE of the (stopped) node`)
  const { loadNodeConfig } = await import('@quorate/node/config')
  const config = loadNodeConfig(values.config)
  const { backupDataDir, restoreDataDir } = await import('@quorate/node/stopped-node')
  if (restore) {
    if (values.from === undefined) usage('restore needs --from BACKUP_FILE')
    const r = await restoreDataDir(config.dataDir, values.from, values.force === true)
    print(`restored ${r.parts.join(', ')} into ${config.dataDir}; start the node again`)
  } else {
    if (values.out === undefined) usage('backup needs --out FILE')
    const r = await backupDataDir(config.dataDir, resolve(values.out))
    print(`backed up ${r.parts.join(', ')} of ${config.dataDir} to ${values.out} (${r.bytes} bytes); keys are not in it: keep builder-key.json and peer-key.json safe separately`)
  }
  return 0
}

async function cmdDigest (args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } })
  if (positionals.length !== 1) usage('digest takes one PATH')
  const { hashOutput } = await import('@quorate/builder')
  const d = await hashOutput(positionals[0])
  if (values.json === true) print(JSON.stringify({ path: positionals[0], narSha256: d.narSha256, fileListSha256: d.fileListSha256, files: d.fileCount, bytes: d.totalBytes }))
  else print(`${d.narSha256}  ${positionals[0]}`)
  return 0
}

async function cmdStatus (args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { node: { type: 'string' }, json: { type: 'boolean' } } })
  if (values.node === undefined) usage('status needs --node URL')
  const { nodeClient } = await import('./node-client.js')
  const client = nodeClient(values.node)
  const s = await client.get('status', {}, { timeoutMs: 10_000 })
  if (values.json === true) { print(JSON.stringify(s, null, 2)); return 0 }
  print(`${escapeForTerminal(s.name)}: builder ${escapeForTerminal(s.builder ?? '(not in policy)')}, sandbox ${s.sandbox}, policy ${s.policyDigest.slice(0, 16)}…`)
  print(`  peer ${s.peerId}, ${s.peers.length} peers connected`)
  print(`  builds: ${Object.entries(s.queue).map(([k, v]) => `${v} ${k}`).join(', ')}`)
  const own = s.ownLog
  if (own !== undefined) {
    print(own.state === 'ready'
      ? `  own log: held (${escapeForTerminal(own.reason)})`
      : `  own log: HOLDING SIGNATURES: ${escapeForTerminal(own.reason)}; fetching it back from peers (${own.answeredOrgs.length} of ${own.requiredOrgs} organizations answered)`)
  }
  for (const p of s.rootProblems ?? []) print(`  build root ${escapeForTerminal(p.image)} unavailable: ${escapeForTerminal(p.problem)}`)
  for (const p of s.nodeProblems ?? []) {
    print(`  WAITING ON THIS NODE: ${escapeForTerminal(p.repoId)}@${p.commit.slice(0, 12)} since ${p.since} (${p.retries} retries): ${escapeForTerminal(p.problem)}`)
  }
  for (const r of s.running ?? []) {
    print(`  running: ${escapeForTerminal(r.repoId)}@${r.commit.slice(0, 12)} (${escapeForTerminal(r.ref)}, attempt ${r.attempt}): ${r.phase} phase for ${duration(r.phaseElapsedSeconds)}, ${duration(r.elapsedSeconds)} in all, log ${r.logBytes} bytes`)
  }
  for (const p of s.problems ?? []) print(`  PROBLEM: ${escapeForTerminal(p.repoId)}: ${escapeForTerminal(p.problem)}`)
  // a signer over its commit-index budget: its observations are stored, their new commits not indexed (older nodes send none)
  for (const n of s.commitsNotIndexed ?? []) {
    print(`  commits not indexed: ${escapeForTerminal(n.repoId)}: ${n.commits} commit${n.commits === 1 ? '' : 's'} in ${n.envelopes} ref observation${n.envelopes === 1 ? '' : 's'} of ${escapeForTerminal(n.builder ?? '(key not in policy)')} (${n.keyid.slice(0, 16)}…), over its commitIndexBudget`)
  }
  for (const repo of s.repositories) {
    const body = await client.get('commits', { repo }, { timeoutMs: 10_000 })
    print(`  ${repo}: ${body.commits.length} commits`)
    for (const c of body.commits.slice(0, 10)) print(`    ${c.commit.slice(0, 12)} ${c.status.padEnd(8)} ${c.narSha256 ?? ''}`)
    // commits some builders claim on a ref that no quorum (nor the node's own mirror) saw: kept apart (older nodes send none)
    const claimants = body.unverifiedClaimants ?? []
    if (claimants.length > 0) {
      const who = claimants.map(c => `${c.commits} commit${c.commits === 1 ? '' : 's'} claimed by ${escapeForTerminal(c.builder)} (${escapeForTerminal(c.org)})`).join('; ')
      print(`    unverified claims: ${who}: not observed by a quorum, not listed above`)
    }
  }
  return 0
}

function duration (seconds: number): string {
  if (seconds < 60) return `${seconds} s`
  const m = Math.floor(seconds / 60)
  return m < 60 ? `${m} min ${seconds % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`
}

async function main (argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') { print(`quorate ${version()}`); return 0 }
  if (cmd === 'help' && rest[0] !== undefined) return helpFor(rest[0])
  if (cmd !== undefined && cmd !== 'help' && (rest.includes('--help') || rest.includes('-h'))) return helpFor(cmd)
  switch (cmd) {
    case 'init': return await cmdInit(rest)
    case 'policy': return await cmdPolicy(rest)
    case 'node': return await cmdNode(rest)
    case 'verify': return await cmdVerify(rest)
    case 'bundle': return await cmdBundle(rest)
    case 'fetch': return await cmdFetch(rest)
    case 'audit': return await cmdAudit(rest)
    case 'key': return await cmdKey(rest)
    case 'backup': return await cmdBackup(rest, false)
    case 'restore': return await cmdBackup(rest, true)
    case 'latest': return await cmdLatest(rest)
    case 'which': return await cmdWhich(rest)
    case 'digest': return await cmdDigest(rest)
    case 'rebuild': return await (await import('./rebuild.js')).cmdRebuild(rest, { print, printErr })
    case 'status': return await cmdStatus(rest)
    case 'logs': return await (await import('./logs.js')).cmdLogs(rest, { print, printErr, usage })
    case 'rebuild-request': return await (await import('./rebuild-request.js')).cmdRebuildRequest(rest, { print, printErr, usage })
    case undefined: case '-h': case '--help': case 'help': print(USAGE); return cmd === undefined ? 2 : 0
    default: return usage(`unknown command "${cmd}"`)
  }
}

function helpFor (cmd: string): number {
  const text = commandHelp(cmd)
  if (text === undefined) return usage(`unknown command "${cmd}"`)
  process.stdout.write(text)
  return 0
}

function version (): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version
  } catch {
    return 'unknown'
  }
}

// A reader that stops early (`quorate status | head -1`) closes the pipe: that is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
    throw err
  })
}

// --debug (any command) keeps stacks in error messages; `node` also takes it for debug logs.
const argv = process.argv.slice(2)
const debug = argv.includes('--debug')
main(argv[0] === 'node' ? argv : argv.filter(a => a !== '--debug')).then(code => { process.exitCode = code }, err => {
  const e = err as Error & { code?: string }
  if (isQuorateError(err)) {
    printErr(`${err.code === 'USAGE' ? 'FAILED: usage' : 'FAILED'}: ${err.message}`)
  } else if (e.code?.startsWith('ERR_PARSE_ARGS') === true) {
    const cmd = argv.find(a => !a.startsWith('-'))
    printErr(`FAILED: usage: ${e.message}; see "quorate ${cmd !== undefined && commandHelp(cmd) !== undefined ? `${cmd} ` : ''}--help"`)
  } else {
    // One sentence: what failed; the stack only when asked for.
    printErr(`FAILED: ${firstLine(e.message ?? String(err))}${e.cause instanceof Error ? ` (${firstLine(e.cause.message)})` : ''}${debug ? '' : '; run again with --debug for details'}`)
  }
  if (debug && err instanceof Error && err.stack !== undefined) printErr(err.stack)
  process.exitCode = 2
})

function firstLine (s: string): string { return s.split('\n')[0].trim() }
