/**
 * A verify worker thread (see verify-pool.ts): checks batches of Ed25519 signatures with core's
 * `verifyEd25519` (node:crypto, RFC 8032), the one verification rule of every decision, and
 * answers one byte per signature (1 valid, 0 not).
 */
import { parentPort } from 'node:worker_threads'
import { verifyEd25519 } from '@quorate/core'
import type { VerifyBatch, VerifyAnswer } from './verify-pool.js'

const port = parentPort
if (port === null) throw new Error('verify-worker.js runs as a worker thread of the verify pool')

port.on('message', (batch: VerifyBatch) => {
  const { id, keys, sigs, msgs, ends } = batch
  const valid = new Uint8Array(ends.length)
  let start = 0
  for (let i = 0; i < ends.length; i++) {
    const end = ends[i]
    valid[i] = verifyEd25519(keys.subarray(i * 32, i * 32 + 32), msgs.subarray(start, end), sigs.subarray(i * 64, i * 64 + 64)) ? 1 : 0
    start = end
  }
  const answer: VerifyAnswer = { id, valid }
  port.postMessage(answer, [valid.buffer])
})
