import { createHash, randomBytes } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import type { Libp2p } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { createPeerKey, startNetwork } from '../src/index.js'
import type { IncomingMessage, LogHead, Network, NetworkInit, SyncSource, Verdict } from '../src/index.js'

export const REPO = 'demo'

/** A test envelope: real bytes, JSON with the log coordinates and a random payload (~1.5 KiB by default). */
export function makeEnvelope (repoId: string, keyid: string, seq: number, padBytes = 1100): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ repoId, keyid, seq, pad: randomBytes(padBytes).toString('base64') }))
}

export function envelopeId (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

interface Entry { seq: number, id: string, data: Uint8Array }

/** An in-memory SyncSource, the same narrow interface the node implements over its store. */
export class MemorySyncSource implements SyncSource {
  readonly logs = new Map<string, { repoId: string, keyid: string, entries: Entry[] }>()

  add (repoId: string, keyid: string, seq: number, data: Uint8Array): boolean {
    const key = `${repoId}\n${keyid}`
    let log = this.logs.get(key)
    if (log === undefined) {
      log = { repoId, keyid, entries: [] }
      this.logs.set(key, log)
    }
    if (log.entries.some(e => e.seq === seq)) return false
    log.entries.push({ seq, id: envelopeId(data), data })
    log.entries.sort((a, b) => a.seq - b.seq)
    return true
  }

  count (repoId?: string, keyid?: string): number {
    let n = 0
    for (const log of this.logs.values()) {
      if ((repoId === undefined || log.repoId === repoId) && (keyid === undefined || log.keyid === keyid)) n += log.entries.length
    }
    return n
  }

  async heads (): Promise<LogHead[]> {
    const out: LogHead[] = []
    for (const log of this.logs.values()) {
      const last = log.entries[log.entries.length - 1]
      if (last === undefined) continue
      const head: LogHead = { repoId: log.repoId, keyid: log.keyid, seq: last.seq, envelopeId: last.id }
      const gap = log.entries.findIndex((e, i) => e.seq !== i) // entries are sorted by seq
      if (gap >= 0) head.firstMissing = gap
      out.push(head)
    }
    return out
  }

  async * envelopesAfter (repoId: string, keyid: string, afterSeq: number): AsyncIterable<Uint8Array> {
    const log = this.logs.get(`${repoId}\n${keyid}`)
    for (const entry of log?.entries ?? []) {
      if (entry.seq > afterSeq) yield entry.data
    }
  }
}

/** A validator like the node's: parse, check the topic's repository, store valid ones before accepting. */
export function storingValidator (source: MemorySyncSource, seen: IncomingMessage[], rejectIf?: (text: string) => boolean): (msg: IncomingMessage) => Promise<Verdict> {
  return async (msg) => {
    seen.push(msg)
    const text = new TextDecoder().decode(msg.data)
    if (rejectIf?.(text) === true) return 'reject'
    let parsed: { repoId?: unknown, keyid?: unknown, seq?: unknown }
    try {
      parsed = JSON.parse(text)
    } catch {
      return 'reject'
    }
    if (parsed.repoId !== msg.repoId || typeof parsed.keyid !== 'string' || typeof parsed.seq !== 'number') return 'reject'
    return source.add(msg.repoId, parsed.keyid, parsed.seq, msg.data) ? 'accept' : 'ignore'
  }
}

export interface TestNode {
  net: Network
  source: MemorySyncSource
  seen: IncomingMessage[]
  peerKey: Uint8Array
}

/** Nodes started by a test; `stopAll` in afterEach stops every one of them. */
export class TestNodes {
  private readonly nodes: Network[] = []

  async start (opts: Partial<NetworkInit> & { bootstrapTo?: TestNode[], rejectIf?: (text: string) => boolean, source?: MemorySyncSource } = {}): Promise<TestNode> {
    const source = opts.source ?? new MemorySyncSource()
    const seen: IncomingMessage[] = []
    const { bootstrapTo, rejectIf, source: _source, ...rest } = opts
    // an explicit `undefined` (e.g. `log: opts.hubLog`) must not override a default; `sync: undefined` must
    const init = Object.fromEntries(Object.entries(rest).filter(([k, v]) => v !== undefined || k === 'sync')) as Partial<NetworkInit>
    const peerKey = opts.peerKey ?? await createPeerKey()
    const net = await startNetwork({
      peerKey,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: (bootstrapTo ?? []).map(n => n.net.multiaddrs()[0] as string),
      loopbackNetwork: true,
      repoIds: [REPO],
      validate: storingValidator(source, seen, rejectIf),
      sync: source,
      ...(process.env.NET_DEBUG !== undefined ? { log: (event: string, fields: Record<string, unknown>) => { console.log(event, JSON.stringify(fields).slice(0, 300)) } } : {}),
      ...init
    })
    this.nodes.push(net)
    return { net, source, seen, peerKey }
  }

  track (net: Network): void {
    this.nodes.push(net)
  }

  async stopAll (): Promise<void> {
    const nodes = this.nodes.splice(0)
    await Promise.allSettled(nodes.map(async n => { await n.stop() }))
  }
}

/** Poll `condition` every 10 ms until true; throws with `what` after timeoutMs. */
export async function waitFor (what: string, condition: () => boolean, timeoutMs = 10_000): Promise<number> {
  const start = performance.now()
  while (!condition()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  return performance.now() - start
}

/**
 * Wait until `read()` has not changed for `quietMs` (something that was moving has stopped: a
 * sender blocked by backpressure); throws with `what` after timeoutMs. Returns the steady value.
 */
export async function waitForSteady (what: string, read: () => number, quietMs: number, timeoutMs = 10_000): Promise<number> {
  const start = performance.now()
  let value = read()
  let since = performance.now()
  for (;;) {
    await new Promise(resolve => setTimeout(resolve, 10))
    const now = performance.now()
    const next = read()
    if (next !== value) {
      value = next
      since = now
    } else if (now - since >= quietMs) {
      return value
    }
    if (now - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (still changing: ${value})`)
  }
}


/** A bare libp2p peer (no Quorate code) to speak broken sync at a real node; the caller stops it. */
export async function createRawPeer (): Promise<Libp2p> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] }
  })
}
