/**
 * Debian's chromium, driven by Playwright's library API (never a downloaded browser): at
 * CHROMIUM_PATH, /usr/bin/chromium by default. .ci/run installs it when missing; a test fails,
 * saying so, when it is absent.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from '@playwright/test';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no chromium at ${CHROMIUM_PATH}: apt-get install -y --no-install-recommends chromium fonts-liberation, or set CHROMIUM_PATH`);
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH });
}
