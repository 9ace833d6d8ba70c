import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { verifyEd25519 } from '@quorate/core'

/**
 * Ed25519 verification on worker threads, for ingest: the main thread parses and stores while
 * workers verify. Every answer comes from core's `verifyEd25519` (node:crypto, RFC 8032), in a
 * worker or, with no worker (size 0, after close, or for a batch a crashed worker held), on the
 * calling thread: the same rule everywhere, wherever it runs.
 *
 * Requests are grouped into batches (one message each way per batch, not per signature): up to
 * `maxBatch` per message; a worker gets a second batch while it verifies one only when a full
 * batch is waiting. Requests that find every worker busy wait and go out together.
 */
export interface VerifyPool {
  /** Whether `signature` is a valid Ed25519 signature of `message` under `publicKey` (32 raw bytes). */
  verify: (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => Promise<boolean>
  /** Worker threads running now. */
  readonly size: number
  readonly stats: VerifyPoolStats
  /** Stops the workers; what they held is verified on this thread, later calls too. */
  close: () => Promise<void>
}

export interface VerifyPoolStats {
  /** Signatures verified by workers, and on the calling thread. */
  inWorkers: number
  inline: number
  batches: number
  /** Workers that died (their batches were verified on the calling thread). */
  crashes: number
}

export interface VerifyPoolInit {
  /** Worker threads (0: verify on the calling thread). */
  workers: number
  /** Signatures per message to a worker (default 64). */
  maxBatch?: number
  /** The worker script (default: this package's verify-worker.js); tests pass another. */
  workerUrl?: URL
  /** Called when a worker dies unexpectedly (it is replaced, up to MAX_RESTARTS times). */
  onCrash?: (error: string) => void
}

/** A batch as sent to a worker: keys (32 bytes each), signatures (64 each), messages back to back, each message's end offset. */
export interface VerifyBatch { id: number, keys: Uint8Array, sigs: Uint8Array, msgs: Uint8Array, ends: Uint32Array }
/** A worker's answer: one byte per signature of the batch, 1 when valid. */
export interface VerifyAnswer { id: number, valid: Uint8Array }

/** Replacements for crashed workers over the pool's life; past that the pool verifies on the calling thread. */
export const MAX_RESTARTS = 8
const IN_FLIGHT_PER_WORKER = 2

/**
 * The default for `verifyWorkers`: none up to two cores, then one per core beyond the second, at
 * most two. Measured on two shared cores (bench/README.md), a worker did not help: the second
 * core already runs LevelDB's writes and compactions, the network and the sync peer, and the
 * total CPU per envelope is the same either way, so a worker only pays off with a core to spare.
 */
export function defaultVerifyWorkers (cores = availableParallelism()): number {
  return cores <= 2 ? 0 : Math.min(2, cores - 2)
}

interface Request { publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array, resolve: (valid: boolean) => void }
interface Thread { worker: Worker, inFlight: Map<number, Request[]>, dead: boolean }

function defaultWorkerUrl (): URL {
  // from the sources (tests run them directly) the built worker is in ../dist
  return import.meta.url.endsWith('.ts') ? new URL('../dist/verify-worker.js', import.meta.url) : new URL('./verify-worker.js', import.meta.url)
}

function verifyInline (r: Request): boolean {
  return verifyEd25519(r.publicKey, r.message, r.signature)
}

export function createVerifyPool (init: VerifyPoolInit): VerifyPool {
  const maxBatch = init.maxBatch ?? 64
  const workerUrl = init.workerUrl ?? defaultWorkerUrl()
  const stats: VerifyPoolStats = { inWorkers: 0, inline: 0, batches: 0, crashes: 0 }
  const threads: Thread[] = []
  let queue: Request[] = []
  let nextId = 0
  let restarts = 0
  let closed = false
  let flushScheduled = false

  function spawn (): void {
    const t: Thread = { worker: new Worker(workerUrl), inFlight: new Map(), dead: false }
    t.worker.unref() // an idle pool never keeps the process alive; it is ref'd while a batch is out
    t.worker.on('message', (a: VerifyAnswer) => {
      const reqs = t.inFlight.get(a.id)
      if (reqs === undefined) return
      t.inFlight.delete(a.id)
      if (t.inFlight.size === 0) t.worker.unref()
      stats.inWorkers += reqs.length
      reqs.forEach((r, i) => r.resolve(a.valid[i] === 1))
      flush()
    })
    const died = (error: string): void => {
      if (t.dead) return
      t.dead = true
      threads.splice(threads.indexOf(t), 1)
      // what the worker held is answered here, by the same function
      for (const reqs of t.inFlight.values()) for (const r of reqs) { stats.inline++; r.resolve(verifyInline(r)) }
      t.inFlight.clear()
      if (closed) return
      stats.crashes++
      init.onCrash?.(error)
      if (restarts < MAX_RESTARTS) { restarts++; spawn() }
      flush()
    }
    t.worker.on('error', err => died(err instanceof Error ? err.message : String(err)))
    t.worker.on('exit', code => died(`exited with code ${code}`))
    threads.push(t)
  }

  for (let i = 0; i < init.workers; i++) spawn()

  function send (t: Thread, reqs: Request[]): void {
    let total = 0
    for (const r of reqs) total += r.message.byteLength
    const keys = new Uint8Array(reqs.length * 32)
    const sigs = new Uint8Array(reqs.length * 64)
    const msgs = new Uint8Array(total)
    const ends = new Uint32Array(reqs.length)
    let off = 0
    reqs.forEach((r, i) => {
      keys.set(r.publicKey, i * 32)
      sigs.set(r.signature, i * 64)
      msgs.set(r.message, off)
      off += r.message.byteLength
      ends[i] = off
    })
    const id = nextId++
    t.inFlight.set(id, reqs)
    if (t.inFlight.size === 1) t.worker.ref()
    stats.batches++
    const batch: VerifyBatch = { id, keys, sigs, msgs, ends }
    t.worker.postMessage(batch, [keys.buffer, sigs.buffer, msgs.buffer, ends.buffer])
  }

  /**
   * Hands queued requests to workers with room, the least busy first: an idle worker takes what
   * is queued at once; a busy one a second batch only when a full one is waiting (so while it
   * verifies, the next batch fills up instead of going out one signature at a time).
   */
  function flush (): void {
    while (queue.length > 0) {
      let best: Thread | undefined
      for (const t of threads) if (t.inFlight.size < IN_FLIGHT_PER_WORKER && (best === undefined || t.inFlight.size < best.inFlight.size)) best = t
      if (best === undefined || (best.inFlight.size > 0 && queue.length < maxBatch)) break
      const reqs = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch)
      queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch)
      send(best, reqs)
    }
    if (queue.length > 0 && threads.length === 0) {
      // no worker left (closed, or out of restarts): answer here
      const reqs = queue
      queue = []
      for (const r of reqs) { stats.inline++; r.resolve(verifyInline(r)) }
    }
  }

  return {
    verify (publicKey, message, signature) {
      // fixed sizes are what a batch packs; anything else is invalid, as verifyEd25519 says too
      if (closed || threads.length === 0 || publicKey.byteLength !== 32 || signature.byteLength !== 64) {
        stats.inline++
        return Promise.resolve(verifyEd25519(publicKey, message, signature))
      }
      return new Promise<boolean>(resolve => {
        queue.push({ publicKey, message, signature, resolve })
        // requests made in the same turn of the event loop go out together
        if (queue.length >= maxBatch) flush()
        else if (!flushScheduled) {
          flushScheduled = true
          setImmediate(() => { flushScheduled = false; flush() })
        }
      })
    },
    get size () { return threads.length },
    stats,
    async close () {
      if (closed) return
      closed = true
      const exits = threads.map(async t => await new Promise<void>(resolve => t.worker.once('exit', () => resolve())))
      for (const t of [...threads]) void t.worker.terminate()
      await Promise.all(exits)
      flush()
    }
  }
}
