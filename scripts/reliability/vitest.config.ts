import { defineConfig } from 'vitest/config';

/**
 * The full reliability runs (issue 14), one at a time, with no time limit, only when asked for
 * (npm run reliability); `npm test` runs a short version of each under test/integration/.
 */
export default defineConfig({
  test: {
    include: ['scripts/reliability/**/*.reliability.ts'],
    testTimeout: 0,
    hookTimeout: 0,
    fileParallelism: false,
  },
});
