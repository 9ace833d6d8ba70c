import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import type { DecisionMemo } from '@quorate/core'
import type { Store } from '@quorate/store'
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

/**
 * What the node last announced per commit (status and trusted result), kept in the store so that
 * notices survive a restart: a notice already sent is not sent again, and a change that happened
 * while the node was down (a trusted commit contradicted) is still noticed against what was known
 * before. Bounded: the newest `perBucket` commits in each of `buckets` buckets (default 64 × 160).
 */
export interface NoticeMemory {
  recall: (repoId: string, commit: string) => Promise<DecisionMemo | undefined>
  remember: (repoId: string, commit: string, memo: DecisionMemo) => Promise<void>
}

/** The store's small node state, where the buckets live. */
export type NoticeMemoryStore = Pick<Store, 'getState' | 'putState'>

const MEMORY_KEY = 'notice-memory/'

export function noticeMemory (store: NoticeMemoryStore, opts: { buckets?: number, perBucket?: number } = {}): NoticeMemory {
  const buckets = opts.buckets ?? 64
  const perBucket = opts.perBucket ?? 160
  // Each bucket is one small state value (oldest first), read once, then kept in memory in step.
  const loaded = new Map<number, Promise<Map<string, DecisionMemo>>>()
  let writes: Promise<unknown> = Promise.resolve()
  const bucketOf = (key: string): number => createHash('sha256').update(key).digest().readUInt32BE(0) % buckets
  function load (b: number): Promise<Map<string, DecisionMemo>> {
    let p = loaded.get(b)
    if (p === undefined) {
      p = store.getState<Array<[string, DecisionMemo]>>(MEMORY_KEY + b).then(entries => new Map(Array.isArray(entries) ? entries : []))
      loaded.set(b, p)
      p.catch(() => loaded.delete(b))
    }
    return p
  }
  return {
    async recall (repoId, commit) {
      const key = `${repoId}@${commit}`
      return (await load(bucketOf(key))).get(key)
    },
    remember (repoId, commit, memo) {
      const key = `${repoId}@${commit}`
      const b = bucketOf(key)
      const next = writes.then(async () => {
        const m = await load(b)
        const was = m.get(key)
        if (was !== undefined && was.status === memo.status && was.resultKey === memo.resultKey) return
        m.delete(key)
        m.set(key, memo.resultKey !== undefined ? { status: memo.status, resultKey: memo.resultKey } : { status: memo.status })
        while (m.size > perBucket) m.delete(m.keys().next().value as string)
        await store.putState(MEMORY_KEY + b, [...m])
      })
      writes = next.catch(() => {})
      return next
    }
  }
}
