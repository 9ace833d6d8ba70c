import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import { QuorateError } from '@quorate/core'
import { FrameDecoder, encodeFrame } from './frames.js'

/** Past this many decoded-but-unread bytes the reader pauses the stream (yamux then stops granting window). */
const READ_HIGH_WATER_BYTES = 1024 * 1024

/**
 * Reads length-prefixed frames from a libp2p stream one at a time, with backpressure: it pauses
 * the stream when too much is queued and resumes once the consumer catches up. (`for await`
 * over a stream and `lpStream` both buffer without limit; PLATFORM.md "Streams".) While paused,
 * yamux stops granting window, so the remote can still send at most one window (1 MiB, see
 * host.ts) into the stream's own read buffer (4 MiB cap).
 */
export class FrameReader {
  private readonly stream: Stream
  private readonly decoder: FrameDecoder
  private readonly frames: Uint8Array[] = []
  private queuedBytes = 0
  private paused = false
  private ended = false
  private closed = false
  private error: Error | undefined
  private wake: (() => void) | undefined

  private readonly signal: AbortSignal | undefined
  /** True while next() waits for the peer's next bytes (nothing is queued and the stream is not paused). */
  waiting = false

  /**
   * `signal` ends the read from our side (a round's deadline): next() then throws its reason even
   * when the stream's own events never come.
   */
  constructor (stream: Stream, maxFrameBytes: number, opts: { signal?: AbortSignal } = {}) {
    this.stream = stream
    this.decoder = new FrameDecoder(maxFrameBytes)
    this.signal = opts.signal
    stream.addEventListener('message', this.onMessage)
    stream.addEventListener('end', this.onEnd)
    stream.addEventListener('close', this.onClose)
    this.signal?.addEventListener('abort', this.onAbort)
    // The stream may have been reset (a peer refusing the round at once) before we listened: its
    // 'close' event is gone, and waiting for it would hang the round for good.
    if (stream.status === 'aborted' || stream.status === 'reset') {
      this.error = new QuorateError('NETWORK_FAILED', `stream was ${stream.status} before it was read (the peer refused or dropped it)`, {})
    } else if (stream.status === 'closed') {
      this.closed = true
    }
    if (this.signal?.aborted === true) this.onAbort()
  }

  /**
   * The next frame, or undefined at a clean end of stream. Throws when the stream failed or ended
   * mid-frame, when the signal aborted, or (with `idleMs`) when the peer sends nothing for that
   * long while we wait for it (`fields.violation` 'stalled').
   */
  async next (idleMs?: number): Promise<Uint8Array | undefined> {
    for (;;) {
      const frame = this.frames.shift()
      if (frame !== undefined) {
        this.queuedBytes -= frame.byteLength
        this.maybeResume()
        return frame
      }
      if (this.error !== undefined) throw this.error
      this.maybeResume()
      if (this.frames.length > 0) continue
      if (this.ended || (this.closed && this.stream.readBufferLength === 0)) {
        if (this.decoder.hasPartial) {
          throw new QuorateError('NETWORK_FAILED', 'stream ended in the middle of a frame (truncated)', { violation: 'truncated' })
        }
        return undefined
      }
      await this.waitForPeer(idleMs)
    }
  }

  dispose (): void {
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('end', this.onEnd)
    this.stream.removeEventListener('close', this.onClose)
    this.signal?.removeEventListener('abort', this.onAbort)
    this.notify()
  }

  private async waitForPeer (idleMs: number | undefined): Promise<void> {
    this.waiting = true
    let timer: NodeJS.Timeout | undefined
    try {
      await new Promise<void>((resolve, reject) => {
        this.wake = resolve
        if (idleMs !== undefined) {
          timer = setTimeout(() => {
            this.wake = undefined
            reject(new QuorateError('NETWORK_FAILED', `the peer sent nothing for ${idleMs} ms while we waited for it (stalled)`, { idleMs, violation: 'stalled' }))
          }, idleMs)
        }
      })
    } finally {
      clearTimeout(timer)
      this.waiting = false
    }
  }

  private readonly onAbort = (): void => {
    const reason: unknown = this.signal?.reason
    this.error ??= reason instanceof Error ? reason : new QuorateError('NETWORK_FAILED', 'the read was aborted', {})
    this.notify()
  }

  private readonly onMessage = (evt: StreamMessageEvent): void => {
    const bytes = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray()
    try {
      for (const frame of this.decoder.push(bytes)) {
        this.frames.push(frame)
        this.queuedBytes += frame.byteLength
      }
    } catch (err) {
      this.error = err as Error
      this.stream.abort(err as Error)
      this.notify()
      return
    }
    // Decide about pausing after the current dispatch: a stream's resume() first hands us what it
    // buffered while paused and only then re-opens the yamux window, so pausing from inside that
    // dispatch would be undone at once and the remote could overrun the 4 MiB read buffer.
    if (!this.pauseCheckQueued) {
      this.pauseCheckQueued = true
      queueMicrotask(this.pauseIfFull)
    }
    this.notify()
  }

  private pauseCheckQueued = false

  private readonly pauseIfFull = (): void => {
    this.pauseCheckQueued = false
    if (!this.paused && this.queuedBytes + this.decoder.bufferedBytes > READ_HIGH_WATER_BYTES && this.stream.readStatus === 'readable') {
      this.stream.pause()
      this.paused = true
    }
  }

  private readonly onEnd = (): void => {
    this.ended = true
    this.notify()
  }

  private readonly onClose = (evt: StreamCloseEvent): void => {
    if (evt.error !== undefined && this.error === undefined) {
      this.error = new QuorateError('NETWORK_FAILED', `stream closed with an error: ${evt.error.message}`, { local: evt.local }, { cause: evt.error })
    }
    this.closed = true
    this.notify()
  }

  private maybeResume (): void {
    if (!this.paused || this.queuedBytes + this.decoder.bufferedBytes > READ_HIGH_WATER_BYTES / 2) return
    this.paused = false
    if (this.stream.readStatus === 'paused') this.stream.resume()
  }

  private notify (): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }
}

/** Frames are coalesced into writes of about this size (see FrameWriter). */
const WRITE_BATCH_BYTES = 64 * 1024

/**
 * Writes length-prefixed frames, coalescing small ones: every `send` costs a yamux frame, a
 * Noise encryption and a socket write, which caps one stream near 3k sends a second here, while
 * 64 KiB batches move 14-20k 2 KiB frames a second. Call `flush()` whenever the peer must see
 * what was written so far (before waiting for its answer, and at the end).
 */
export class FrameWriter {
  private readonly stream: Stream
  private readonly signal: AbortSignal | undefined
  private parts: Uint8Array[] = []
  private bytes = 0

  /** `signal` ends a wait for 'drain' from our side (a round's deadline). */
  constructor (stream: Stream, opts: { signal?: AbortSignal } = {}) {
    this.stream = stream
    this.signal = opts.signal
  }

  async write (payload: Uint8Array): Promise<void> {
    const frame = encodeFrame(payload)
    this.parts.push(frame)
    this.bytes += frame.byteLength
    if (this.bytes >= WRITE_BATCH_BYTES) await this.flush()
  }

  async flush (): Promise<void> {
    if (this.bytes === 0) return
    const batch = this.parts.length === 1 ? this.parts[0] as Uint8Array : Buffer.concat(this.parts, this.bytes)
    this.parts = []
    this.bytes = 0
    await sendWithBackpressure(this.stream, batch, this.signal)
  }
}

/**
 * Send bytes; when the stream's send buffer is full, wait for its 'drain' event (not
 * `onDrain()`, which in @libp2p/utils 7.4 resolves immediately after its first use).
 */
async function sendWithBackpressure (stream: Stream, bytes: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
  signal?.throwIfAborted()
  if (stream.send(bytes)) return
  await new Promise<void>((resolve, reject) => {
    const cleanup = (): void => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
    }
    const onDrain = (): void => { cleanup(); resolve() }
    const onClose = (evt: StreamCloseEvent): void => {
      cleanup()
      reject(new QuorateError('NETWORK_FAILED', `stream closed while sending${evt.error !== undefined ? `: ${evt.error.message}` : ''}`, {}, { cause: evt.error }))
    }
    const onAbort = (): void => {
      cleanup()
      reject(signal?.reason instanceof Error ? signal.reason : new QuorateError('NETWORK_FAILED', 'sending was aborted', {}))
    }
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
    signal?.addEventListener('abort', onAbort)
  })
}
