import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    setupFiles: ['./test/setup-polyfills.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Many test files start several real node processes; on a 2-core machine running them one
    // file at a time keeps timings (and so the tests) steady.
    fileParallelism: false,
    reporters: ['default', './test/summary-reporter.ts']
  }
})
