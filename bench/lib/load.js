// A small HTTP load generator for loopback: C keep-alive connections, each sending its next request
// as soon as the last answer is read, for a fixed time. Returns requests/s and latency percentiles.
import { Agent, get } from 'node:http'
import { percentile } from './common.js'

export async function loadTest (base, pathFor, { connections = 16, durationMs = 5000 } = {}) {
  const agent = new Agent({ keepAlive: true, maxSockets: connections })
  const latencies = []
  let errors = 0
  let bytes = 0
  const end = performance.now() + durationMs
  const one = (path) => new Promise((resolve) => {
    const t = performance.now()
    get(base + path, { agent }, (res) => {
      res.on('data', (c) => { bytes += c.length })
      res.on('end', () => { if (res.statusCode === 200) latencies.push(performance.now() - t); else errors++; resolve() })
    }).on('error', () => { errors++; resolve() })
  })
  const t0 = performance.now()
  let i = 0
  await Promise.all(Array.from({ length: connections }, async () => {
    while (performance.now() < end) await one(pathFor(i++))
  }))
  const ms = performance.now() - t0
  agent.destroy()
  return {
    perSec: latencies.length / (ms / 1000),
    requests: latencies.length,
    errors,
    avgBytes: latencies.length === 0 ? 0 : bytes / latencies.length,
    p50: percentile(latencies, 50) ?? NaN,
    p99: percentile(latencies, 99) ?? NaN
  }
}
