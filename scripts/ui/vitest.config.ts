import { defineConfig } from 'vitest/config';

/** The README's screenshots of the web UI, taken only when asked for (npm run screenshots). */
export default defineConfig({
  test: {
    include: ['scripts/ui/**/*.shots.ts'],
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});
