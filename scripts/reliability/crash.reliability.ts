/**
 * The full crash run: `npm run reliability -- crash` (SNAPFORK_CRASH_KILLS, default 200;
 * SNAPFORK_CRASH_SEED, default 14). Needs `npm run build`. Prints the figures the README's
 * Reliability section quotes, and fails on the first lost or damaged write, fsck problem or 500.
 */
import { execFileSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { withoutEngines } from '../../test/support/engines.js';
import { buildVmAssets } from '../../test/support/vm-assets.js';
import { runCrashLoop } from './crash.js';

const kills = Number(process.env.SNAPFORK_CRASH_KILLS ?? 200);
const seed = Number(process.env.SNAPFORK_CRASH_SEED ?? 14);

it(`survives ${kills} kills -9 under pushes, forks, tag moves, deletions, collections and VM commits (seed ${seed})`, async () => {
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  const started = Date.now();
  const env = { ...withoutEngines(process.env), SNAPFORK_VM_ASSETS: await buildVmAssets() };
  const report = await runCrashLoop({ kills, seed, env, vmEvery: 5, log: (line) => console.log(line) });
  console.log(JSON.stringify({ seed, ...report, seconds: Math.round((Date.now() - started) / 1000) }, null, 2));
  expect(report.kills).toBe(kills);
  expect(report.serverErrors).toBe(0);
});
