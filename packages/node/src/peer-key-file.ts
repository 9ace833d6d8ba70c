import { readFileSync, writeFileSync } from 'node:fs'
import { QuorateError } from '@quorate/core'
import { createPeerKey, peerIdFromPeerKey } from '@quorate/network'
import { assertPrivateFile } from './config.js'

/** The libp2p peer key file (0600, separate from the builder key): `{"type":"quorate-peer-key","privateKey":"<base64 protobuf>"}`. */
export function loadPeerKey (file: string): Uint8Array {
  assertPrivateFile(file, 'libp2p peer key')
  const raw = JSON.parse(readFileSync(file, 'utf8')) as { type?: string, privateKey?: string }
  if (raw.type !== 'quorate-peer-key' || typeof raw.privateKey !== 'string') throw new QuorateError('KEY_INVALID', `${file}: not a Quorate peer key file; create one with "quorate init"`)
  return new Uint8Array(Buffer.from(raw.privateKey, 'base64'))
}

/** Writes a new peer key file (0600) and returns the key. */
export async function writePeerKeyFile (file: string): Promise<Uint8Array> {
  const key = await createPeerKey()
  writeFileSync(file, JSON.stringify({ type: 'quorate-peer-key', privateKey: Buffer.from(key).toString('base64') }) + '\n', { mode: 0o600 })
  return key
}

/** Writes a new peer key file and returns the node's peer id (`12D3KooW…`), for `quorate init`. */
export async function initPeerKeyFile (file: string): Promise<string> {
  return peerIdFromPeerKey(await writePeerKeyFile(file))
}
