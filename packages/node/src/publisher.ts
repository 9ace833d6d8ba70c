import type { Network } from '@quorate/network'
import type { Logger } from './logger.js'
import type { NodeMetrics } from './metrics.js'

export interface PublisherInit {
  /** Time between publish rounds for envelopes that reached no peer yet, in ms. Default 2000. */
  retryIntervalMs?: number
  /** Publish attempts before an envelope is left to the sync protocol. Default 20. */
  maxTries?: number
}

export interface PublisherComponents {
  network: Pick<Network, 'publish'>
  metrics: Pick<NodeMetrics, 'publishes'>
  logger: Logger
}

/**
 * Gossips this node's own envelopes. They reach it only after the own log persisted them
 * (persist, then publish), and stay queued until a publish reached at least one peer or
 * `maxTries` rounds passed (gossip is lossy; the sync protocol delivers the rest).
 */
export interface Publisher {
  /** Queues an envelope and starts a publish round. */
  publish: (item: { id: string, repoId: string, bytes: Uint8Array }) => void
  /** Envelopes still waiting for a peer. */
  pending: () => number
  /** Resolves after the current round (tests wait on this rather than on time). */
  flush: () => Promise<void>
  start: () => void
  stop: () => Promise<void>
}

export function publisher (init: PublisherInit, c: PublisherComponents): Publisher {
  const retryIntervalMs = init.retryIntervalMs ?? 2000
  const maxTries = init.maxTries ?? 20
  const unpublished = new Map<string, { repoId: string, bytes: Uint8Array, tries: number }>()
  let round: Promise<void> | undefined
  let timer: NodeJS.Timeout | undefined
  let stopping = false

  async function runRound (): Promise<void> {
    for (const [id, item] of [...unpublished]) {
      if (stopping) return
      try {
        const { recipients } = await c.network.publish(item.repoId, item.bytes)
        item.tries++
        c.metrics.publishes.inc({ result: recipients > 0 ? 'delivered' : 'no-peers' })
        if (recipients > 0 || item.tries >= maxTries) unpublished.delete(id)
      } catch (err) {
        item.tries++
        c.metrics.publishes.inc({ result: 'error' })
        c.logger.debug('publish failed', { error: (err as Error).message })
      }
    }
  }

  function flush (): Promise<void> {
    round ??= runRound().finally(() => { round = undefined })
    return round
  }

  return {
    publish (item) {
      unpublished.set(item.id, { repoId: item.repoId, bytes: item.bytes, tries: 0 })
      void flush()
    },
    pending: () => unpublished.size,
    flush,
    start () {
      stopping = false
      timer = setInterval(() => { void flush() }, retryIntervalMs)
      void flush()
    },
    async stop () {
      stopping = true
      clearInterval(timer)
      await round
    }
  }
}
