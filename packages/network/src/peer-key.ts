import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { QuorateError } from '@quorate/core'

/** A new Ed25519 libp2p private key, protobuf-encoded (the format libp2p and `peerKey` use). */
export async function createPeerKey (): Promise<Uint8Array> {
  return privateKeyToProtobuf(await generateKeyPair('Ed25519'))
}

/** Decode a protobuf-encoded libp2p private key, with an error that says what to do. */
export function decodePeerKey (key: Uint8Array): PrivateKey {
  try {
    return privateKeyFromProtobuf(key)
  } catch (err) {
    throw new QuorateError('KEY_INVALID',
      `peer key: not a protobuf-encoded libp2p private key (${(err as Error).message}); create one with createPeerKey() / \`quorate init\``,
      { length: key.length }, { cause: err })
  }
}

/** The peer id (base58 multihash string) of a protobuf-encoded libp2p private key. */
export function peerIdFromPeerKey (key: Uint8Array): string {
  return peerIdFromPrivateKey(decodePeerKey(key)).toString()
}
