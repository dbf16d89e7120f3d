import { UsageError } from './errors.js';

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Parses a token lifetime: `30s`, `15m`, `1h`, `7d`, or plain seconds. Returns seconds. */
export function parseTtl(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text);
  const seconds = m ? Number(m[1]) * (UNIT_SECONDS[m[2] || 's'] as number) : NaN;
  if (!Number.isSafeInteger(seconds) || seconds <= 0) {
    throw new UsageError(`bad --ttl "${text}": expected a positive duration like 30s, 15m, 1h, 7d or seconds`);
  }
  return seconds;
}
