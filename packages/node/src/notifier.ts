import { spawn } from 'node:child_process'
import type { NodeConfig } from './config.js'
import type { Logger } from './logger.js'

/**
 * What a notification says: a final answer that is bad news (a decision turned disputed or
 * failed, a trusted commit was contradicted) or a builder equivocated. One notice per change.
 */
export interface Notice {
  type: 'disputed' | 'failed' | 'contradicted' | 'equivocation'
  repoId: string
  commit?: string
  builder?: string
  summary: string
  /** Why: the decision's summary with the equivocators and conflicted organizations. */
  reason?: string
  node: string
  time: string
}

/**
 * Sends notices to the configured webhook (POST JSON) and/or command (argv, notice JSON on
 * stdin, no shell). Failures are logged, never thrown: a broken pager must not stop the node.
 */
export function createNotifier (config: NodeConfig, logger: Logger): (notice: Omit<Notice, 'node' | 'time'>) => void {
  const notify = config.notify
  return (partial) => {
    if (notify === undefined) return
    const notice: Notice = { ...partial, node: config.name, time: new Date().toISOString() }
    const body = JSON.stringify(notice)
    if (notify.webhookUrl !== undefined) {
      fetch(notify.webhookUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(10_000) })
        .then(res => { if (!res.ok) logger.warn('notify webhook refused', { status: res.status }) })
        .catch(err => logger.warn('notify webhook failed', { error: (err as Error).message }))
    }
    if (notify.command !== undefined) {
      const [cmd, ...args] = notify.command
      try {
        const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'], timeout: 30_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', QUORATE_NOTICE_TYPE: notice.type } })
        let err = ''
        child.stderr.on('data', d => { if (err.length < 2000) err += String(d) })
        child.on('error', e => logger.warn('notify command failed', { command: cmd, error: e.message }))
        child.on('exit', code => { if (code !== 0) logger.warn('notify command failed', { command: cmd, exitCode: code, stderr: err.slice(0, 500) }) })
        child.stdin.on('error', () => {})
        child.stdin.end(body + '\n')
      } catch (e) {
        logger.warn('notify command failed', { command: cmd, error: (e as Error).message })
      }
    }
  }
}
