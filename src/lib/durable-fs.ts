import { open } from 'node:fs/promises';

/**
 * Fsyncs a directory, so that a rename or a new file in it survives a power loss: the last step
 * of every temp-file, fsync, rename write (restic's protocol).
 */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
