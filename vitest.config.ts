import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/support/zstd-choice.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Two cores: more workers than that only adds contention for the integration suites.
    maxWorkers: 2,
  },
});
