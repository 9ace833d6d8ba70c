import type { TreeSpec } from './helpers.js'

/** Deterministic bytes: byte i is (i * 31) mod 251. */
export function patternBytes (n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (i * 31) % 251
  return out
}

/** Trees whose NAR hashes were recorded with Debian's nix-store (see hash-output.test.ts). */
export const GOLDEN_TREES: Record<string, TreeSpec> = {
  'empty-dir': { dir: {} },
  // 5 bytes: padded to 8 in the NAR.
  'single-file': { file: 'hello', mode: 0o644 },
  // 16 bytes: no padding; the owner-execute bit alone makes it executable.
  'executable-file': { file: '#!/bin/sh\ntrue\n\n', mode: 0o744 },
  // 2.5 MiB + 3 bytes: crosses the 1 MiB read buffers twice and needs padding.
  'big-file': { file: patternBytes(2.5 * 1024 * 1024 + 3), mode: 0o644 },
  'symlink': { symlink: 'some/where/else' },
  'nested': {
    dir: {
      // Bytewise order: 'B' (0x42) < 'Z' < '_' < 'a' < 'a-b' < 'a.b' < 'é' (0xc3 0xa9);
      // a locale-aware sort would interleave the cases and put 'é' next to 'e'.
      a: {
        dir: {
          x: { file: '', mode: 0o644 },
          'deep': { dir: { er: { dir: { 'eight.txt': { file: '12345678', mode: 0o600 } } } } },
          'empty': { dir: {} }
        }
      },
      'a-b': { file: 'thirteen byte', mode: 0o644 },
      'a.b': { file: 'x', mode: 0o755 },
      B: { file: 'upper', mode: 0o444 },
      Z: { symlink: 'a/x' },
      _: { symlink: '../outside/target' },
      'é': { file: 'accent\n', mode: 0o644 },
      'e': { file: 'plain e\n', mode: 0o644 }
    }
  }
}
