import { createHash } from 'node:crypto'

export function sha256Hex (data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex')
}

export function bytesToHex (b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
}

const HEX = /^(?:[0-9a-f]{2})*$/

export function hexToBytes (hex: string): Uint8Array | undefined {
  if (!HEX.test(hex)) return undefined
  return new Uint8Array(Buffer.from(hex, 'hex'))
}

export function isSha256Hex (s: unknown): s is string {
  return typeof s === 'string' && /^[0-9a-f]{64}$/.test(s)
}

export function isCommitSha (s: unknown): s is string {
  return typeof s === 'string' && /^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(s)
}
