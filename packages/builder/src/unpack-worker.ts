/**
 * The unprivileged unpack worker: started by BuildRootCache (under setpriv, as the node's
 * unpack user) with one JSON argument {rootfs, cap, layers: [{blob: fd, compression, where}]};
 * the layer blobs arrive as inherited descriptors. Prints {diffIds} or {error} as JSON.
 */
import { unpackLayers, type LayerSource } from './layer-extract.js'

const args = JSON.parse(process.argv[2] ?? '{}') as { rootfs: string, cap: number, layers: LayerSource[] }
try {
  const diffIds = await unpackLayers(args.rootfs, args.layers, args.cap)
  process.stdout.write(JSON.stringify({ diffIds }))
} catch (err) {
  const e = err as { code?: string, message?: string, fields?: Record<string, unknown> }
  process.stdout.write(JSON.stringify({ error: { code: e.code, message: e.message, fields: e.fields } }))
  process.exitCode = 1
}
