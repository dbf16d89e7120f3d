/**
 * The full bad-input run: `npm run reliability -- bad-input` (SNAPFORK_BAD_INPUT_REQUESTS,
 * default 20,000; SNAPFORK_BAD_INPUT_SEED, default 14). Prints the figures the README's
 * Reliability section quotes, and fails on any 5xx or unanswered request.
 */
import { expect, it } from 'vitest';
import { badInputRun } from './bad-input.js';

const count = Number(process.env.SNAPFORK_BAD_INPUT_REQUESTS ?? 20_000);
const seed = Number(process.env.SNAPFORK_BAD_INPUT_SEED ?? 14);

it(`answers ${count} malformed requests below 500 and stays up (seed ${seed})`, async () => {
  const report = await badInputRun(count, seed, (r) => console.log(`${r.tried} tried, ${r.failures.length} failed, ${r.seconds.toFixed(0)} s`));
  const unanswered = report.failures.filter((f) => f.answer === 'no answer').length;
  console.log(
    JSON.stringify(
      {
        seed,
        requests_tried: report.tried,
        '5xx_seen': report.failures.length - unanswered,
        unanswered,
        seconds: Math.round(report.seconds),
        statuses: report.statuses,
        valid_requests_not_2xx: Object.fromEntries(Object.entries(report.valid).filter(([, status]) => status >= 300)),
        failures: report.failures,
      },
      null,
      2,
    ),
  );
  expect(report.tried).toBeGreaterThanOrEqual(count);
  expect(report.failures).toEqual([]);
  expect(report.upAfter).toBe(true);
});
