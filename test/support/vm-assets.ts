/**
 * The guest assets VM tests boot, built by the project's own script. The script is idempotent
 * and locks its directory, so every test file may call this: the first build of a run does the
 * work, the others find it done. No VM test skips: without QEMU or the assets it fails, saying
 * why (.ci/run installs and builds them).
 */
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const projectDir = resolve(import.meta.dirname, '../..');

/** SNAPFORK_VM_ASSETS, as the server reads it, else the project's storage/vm-assets. */
export const vmAssetsDir = resolve(process.env.SNAPFORK_VM_ASSETS ?? join(projectDir, 'storage/vm-assets'));

let built: Promise<string> | undefined;

/** Builds the assets (or finds them built) and resolves with their directory. */
export function buildVmAssets(): Promise<string> {
  return (built ??= (async () => {
    const script = join(projectDir, 'scripts/vm/build-guest.sh');
    try {
      await execFileAsync('bash', [script], { env: { ...process.env, SNAPFORK_VM_ASSETS: vmAssetsDir }, maxBuffer: 16 * 1024 * 1024 });
    } catch (error) {
      const { stderr } = error as { stderr?: string };
      throw new Error(
        `the VM tests need QEMU and the guest assets, and ${script} failed to provide them ` +
          `(SNAPFORK_VM_ASSETS=${vmAssetsDir}):\n${(stderr ?? String(error)).slice(-2000)}`,
        { cause: error },
      );
    }
    try {
      await execFileAsync('qemu-system-x86_64', ['--version']);
    } catch (error) {
      throw new Error('the VM tests need qemu-system-x86_64 on PATH (Debian package qemu-system-x86)', { cause: error });
    }
    return vmAssetsDir;
  })());
}


/** A QemuRuntime log for tests that drive the runtime directly: what it says is not their subject. */
export const quietLog = { info: () => undefined, warn: () => undefined };
