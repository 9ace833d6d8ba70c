import { spawn, type ChildProcess } from 'node:child_process'
import { killGroup } from './child-process.js'

/** An object read by `git cat-file --batch`: its type and, for objects up to the size cap, its bytes. */
export interface BatchObject { type: string, size: number, body?: Buffer }

interface Ask { resolve: (o: BatchObject | undefined) => void }

/**
 * One long-running `git cat-file --batch` process: objects are read by writing their ids to
 * it, so a lookup costs a line written and read instead of a git process started (which, from
 * a node of 1 GiB, cost more than everything else a lookup does). It starts at the first read,
 * ends after `idleMs` without reads (and at `close`), and is restarted after an error or a
 * timeout; reads it cannot answer resolve as missing. Bodies larger than `maxBodyBytes` are
 * skipped (their type and size are still given).
 */
export class CatFileBatch {
  private child: ChildProcess | undefined
  private readonly asks: Ask[] = []
  private chunks: Buffer[] = []
  /** Bytes of the current object's body (plus its newline) still to skip, when it is over the cap. */
  private skip = 0
  private pendingHeader: { type: string, size: number } | undefined
  private idleTimer: NodeJS.Timeout | undefined
  private answerTimer: NodeJS.Timeout | undefined

  constructor (
    private readonly argv: readonly string[],
    private readonly env: () => Record<string, string>,
    private readonly opts: { idleMs?: number, timeoutMs?: number, maxBodyBytes?: number } = {}
  ) {}

  /** The objects named by `ids` (full hex ids, checked by the caller), in order; undefined where missing or unreadable. */
  async read (ids: readonly string[]): Promise<Array<BatchObject | undefined>> {
    if (ids.length === 0) return []
    const child = this.start()
    if (this.asks.length === 0) this.setBusy(true)
    const answers = ids.map(async () => await new Promise<BatchObject | undefined>(resolve => this.asks.push({ resolve })))
    child.stdin?.write(ids.map(id => `${id}\n`).join(''))
    return await Promise.all(answers)
  }

  /** Ends the process (what it was asked resolves as missing); the next read starts a new one. */
  close (): void {
    const child = this.child
    this.child = undefined
    clearTimeout(this.idleTimer)
    clearTimeout(this.answerTimer)
    this.chunks = []
    this.skip = 0
    this.pendingHeader = undefined
    for (const a of this.asks.splice(0)) a.resolve(undefined)
    if (child !== undefined) {
      child.stdin?.destroy()
      child.stdout?.destroy()
      killGroup(child)
    }
  }

  private start (): ChildProcess {
    if (this.child !== undefined) return this.child
    const [cmd, ...args] = this.argv
    const child = spawn(cmd, args, { env: this.env(), detached: true, stdio: ['pipe', 'pipe', 'ignore'] })
    this.child = child
    const gone = (): void => { if (this.child === child) this.close() }
    child.once('error', gone)
    child.once('exit', gone)
    child.stdin?.on('error', gone)
    child.stdout?.on('data', (chunk: Buffer) => { if (this.child === child) this.take(chunk) })
    return child
  }

  /**
   * While reads wait, the process keeps the event loop alive and git must answer something
   * within the timeout (else it is ended); when idle it does neither, and ends after idleMs.
   */
  private setBusy (busy: boolean): void {
    const child = this.child
    if (child === undefined) return
    clearTimeout(this.idleTimer)
    clearTimeout(this.answerTimer)
    const streams = [child.stdin, child.stdout] as Array<{ ref?: () => void, unref?: () => void } | null>
    if (busy) {
      child.ref()
      for (const s of streams) s?.ref?.()
      this.answerTimer = setTimeout(() => this.close(), this.opts.timeoutMs ?? 60_000)
    } else {
      child.unref()
      for (const s of streams) s?.unref?.()
      this.idleTimer = setTimeout(() => this.close(), this.opts.idleMs ?? 30_000)
      this.idleTimer.unref()
    }
  }

  private take (chunk: Buffer): void {
    this.chunks.push(chunk)
    const waiting = this.asks.length
    let buf = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks)
    let at = 0
    const max = this.opts.maxBodyBytes ?? 1024 * 1024
    for (;;) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, buf.length - at)
        this.skip -= n
        at += n
        if (this.skip > 0) break
        continue
      }
      if (this.pendingHeader !== undefined) {
        const { type, size } = this.pendingHeader
        if (buf.length - at < size + 1) break
        this.pendingHeader = undefined
        this.asks.shift()?.resolve({ type, size, body: Buffer.from(buf.subarray(at, at + size)) })
        at += size + 1
        continue
      }
      const nl = buf.indexOf(0x0a, at)
      if (nl < 0) break
      const [, type, sizeText] = buf.subarray(at, nl).toString('latin1').split(' ')
      at = nl + 1
      const size = Number(sizeText)
      if (sizeText === undefined || !Number.isSafeInteger(size) || size < 0) {
        // "<id> missing" (or anything unexpected: then it answers as missing)
        this.asks.shift()?.resolve(undefined)
        continue
      }
      if (size > max) {
        this.asks.shift()?.resolve({ type, size })
        this.skip = size + 1
        continue
      }
      this.pendingHeader = { type, size }
    }
    buf = buf.subarray(at)
    this.chunks = buf.length === 0 ? [] : [buf]
    if (this.asks.length === 0) this.setBusy(false)
    else if (this.asks.length < waiting) this.setBusy(true) // progress: the timeout starts again
  }
}
