import { parseArgs } from 'node:util'
import { readFileSync, statSync } from 'node:fs'
import { QuorateError, isCommitSha, isRepoId } from '@quorate/core'
import { nodeClient, NodeHttpError } from './node-client.js'

interface Io { print: (s: string) => void, printErr: (s: string) => void, usage: (msg: string) => never }

/** Reads the admin token: --token-file (mode 0600, one line) or QUORATE_ADMIN_TOKEN. Never a command-line value (ps shows it). */
export function readAdminToken (file: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (file !== undefined) {
    let text: string
    let mode: number
    try {
      mode = statSync(file).mode
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new QuorateError('USAGE', `--token-file ${file}: cannot read it (${(err as { code?: string }).code ?? (err as Error).message})`)
    }
    if ((mode & 0o077) !== 0) throw new QuorateError('KEY_PERMISSIONS', `--token-file ${file} is readable by other users (mode ${(mode & 0o777).toString(8)}); run "chmod 600 ${file}"`)
    const token = text.trim()
    if (token === '') throw new QuorateError('USAGE', `--token-file ${file} is empty; it must hold the node's admin token`)
    return token
  }
  const token = env.QUORATE_ADMIN_TOKEN?.trim()
  if (token === undefined || token === '') throw new QuorateError('USAGE', 'rebuild-request needs the node\'s admin token: --token-file FILE (mode 0600) or QUORATE_ADMIN_TOKEN')
  return token
}

/**
 * `quorate rebuild-request`: asks a node (its administrator's action) to build a commit again
 * after its final failure, for a cause fixed on the node side (a mirror that was down, a tool or
 * credential that was missing). Exit 0 accepted, 1 refused (no final failure, already built,
 * unknown commit), 2 usage, authentication or connection error.
 */
export async function cmdRebuildRequest (args: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { node: { type: 'string' }, repo: { type: 'string' }, commit: { type: 'string' }, 'token-file': { type: 'string' }, json: { type: 'boolean' } }
  })
  if (values.node === undefined || values.repo === undefined || values.commit === undefined) io.usage('rebuild-request needs --node URL, --repo ID and --commit SHA')
  if (!isRepoId(values.repo)) io.usage(`--repo ${values.repo} is not a repository id`)
  if (!isCommitSha(values.commit)) io.usage('--commit must be a full lowercase hex commit id')
  const token = readAdminToken(values['token-file'])
  const client = nodeClient(values.node, { token })
  try {
    const answer = await client.post('adminRebuild', { repo: values.repo, commit: values.commit })
    if (values.json === true) io.print(JSON.stringify(answer, null, 2))
    const reopened = answer.reopenedAttempt !== undefined && answer.envelopeId !== undefined
      ? `attempt ${answer.reopenedAttempt}'s final failure is reopened (envelope ${answer.envelopeId.slice(0, 16)}…), `
      : 'its job had stopped without a final failure to reopen, '
    io.printErr(`QUEUED: ${values.repo}@${values.commit} will be built again on ${client.url}: ${reopened}attempt ${answer.nextAttempt} is next; the commit is ${answer.status} there now`)
    return 0
  } catch (err) {
    if (!(err instanceof NodeHttpError)) throw err
    if (err.status === 401 || err.status === 403) throw new QuorateError('HTTP_FAILED', `${err.message} (check --token-file / QUORATE_ADMIN_TOKEN against the node's "adminTokenFile")`)
    if (err.reason === 'unknown-commit' || err.reason === 'already-built' || err.reason === 'not-final' || err.reason === 'holding-signatures') {
      if (values.json === true) io.print(JSON.stringify({ ok: false, code: err.reason, error: err.message }, null, 2))
      io.printErr(`REFUSED: ${err.message}`)
      return 1
    }
    throw err
  }
}
