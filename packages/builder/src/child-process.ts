import { spawn, type ChildProcess } from 'node:child_process'

export interface CollectOptions {
  cwd?: string
  env: Record<string, string>
  /** Written to stdin, which is then closed. */
  input?: string
  /** Kill the whole process group after this long. */
  timeoutMs?: number
  /** Keep at most this many bytes of stdout (and of stderr); the rest is counted but dropped. */
  maxOutputBytes?: number
  /** Sees stderr as it arrives (e.g. git's progress lines). */
  onStderr?: (chunk: Buffer) => void
}

export interface CollectResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  /** The same bytes as `stdout`, undecoded (for binary content such as git blobs). */
  stdoutBytes: Buffer
  stderr: string
  timedOut: boolean
}

/**
 * Runs argv without a shell in its own process group, collects its output, and on timeout
 * kills the whole group. A missing program rejects with the spawn error (code ENOENT).
 */
export async function runCollect (argv: readonly string[], options: CollectOptions): Promise<CollectResult> {
  const max = options.maxOutputBytes ?? 64 * 1024 * 1024
  const child = spawn(argv[0], argv.slice(1), {
    cwd: options.cwd,
    env: options.env,
    detached: true,
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe']
  })
  const out = collector(max)
  const err = collector(max)
  child.stdout?.on('data', out.push)
  child.stderr?.on('data', err.push)
  if (options.onStderr !== undefined) child.stderr?.on('data', options.onStderr)
  if (options.input !== undefined) {
    child.stdin?.on('error', () => {}) // the program may exit without reading its input
    child.stdin?.end(options.input)
  }
  let timedOut = false
  const timer = options.timeoutMs === undefined
    ? undefined
    : setTimeout(() => { timedOut = true; killGroup(child) }, options.timeoutMs)
  try {
    const { code, signal } = await new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (code, signal) => resolve({ code, signal }))
    })
    const stdoutBytes = out.bytes()
    return { code, signal, stdout: stdoutBytes.toString('utf8'), stdoutBytes, stderr: err.text(), timedOut }
  } finally {
    if (timer !== undefined) clearTimeout(timer)
  }
}

/** SIGKILL to the child's process group (it leads one when spawned with `detached: true`). */
export function killGroup (child: ChildProcess): void {
  if (child.pid === undefined) return
  try {
    process.kill(-child.pid, 'SIGKILL')
  } catch {
    // ESRCH: the group is already gone.
  }
}

function collector (max: number): { push: (chunk: Buffer) => void, bytes: () => Buffer, text: () => string } {
  const chunks: Buffer[] = []
  let kept = 0
  return {
    push: (chunk: Buffer) => {
      if (kept >= max) return
      const part = chunk.subarray(0, max - kept)
      chunks.push(part)
      kept += part.length
    },
    bytes: () => Buffer.concat(chunks),
    text: () => Buffer.concat(chunks).toString('utf8')
  }
}
