import { defineConfig } from 'vitest/config';

/** Benchmarks run one at a time, with no time limit, only when asked for (npm run bench). */
export default defineConfig({
  test: {
    include: ['scripts/bench/**/*.bench.ts'],
    testTimeout: 0,
    fileParallelism: false,
    env: { SNAPFORK_BENCH: '1' },
  },
});
