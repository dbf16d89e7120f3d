/**
 * Debian's chromium, driven by Playwright's library API (never a downloaded browser): at
 * CHROMIUM_PATH, /usr/bin/chromium by default, installed by scripts/ui/install-chromium.sh when
 * missing (as .ci/run does); a test fails, saying so, when it cannot be.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { chromium, type Browser } from '@playwright/test';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const installScript = resolve(import.meta.dirname, '../../scripts/ui/install-chromium.sh');

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH) && process.env.CHROMIUM_PATH === undefined) {
    await promisify(execFile)('bash', [installScript]).catch((error: unknown) => {
      throw new Error(`no chromium at ${CHROMIUM_PATH}, and ${installScript} could not install it (it needs root and Debian's apt), or set CHROMIUM_PATH`, { cause: error });
    });
  }
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`no chromium at ${CHROMIUM_PATH}: set CHROMIUM_PATH`);
  return chromium.launch({ executablePath: CHROMIUM_PATH });
}
