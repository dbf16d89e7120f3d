import { hostname } from 'node:os';
import { open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { conflict } from '../../domain/errors.js';

export const LOCK_FILE = 'LOCK';

/**
 * Takes the chunk store's directory for this process: opening a store clears its tmp/ (the
 * packs of writers that died), which would destroy the packs a second live server is writing.
 * The lock is a file holding the owner's pid, created exclusively; a lock whose process is gone
 * (a crash, kill -9) is taken over. Returns the release function.
 */
export async function lockDirectory(dir: string): Promise<() => Promise<void>> {
  const file = join(dir, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(file, 'wx');
      await handle.writeFile(`${process.pid}\n${hostname()}\n`);
      await handle.close();
      let released = false;
      return async () => {
        if (released) return; // a second close must not remove a later owner's lock
        released = true;
        await unlink(file).catch(() => undefined);
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw e;
    }
    const [pid, host] = (await readFile(file, 'utf8').catch(() => '')).split('\n');
    if (host === hostname() && isAlive(Number(pid))) {
      throw conflict(`${dir} is in use by process ${pid}: run one snapfork server per data directory`);
    }
    await unlink(file).catch(() => undefined); // stale: its owner died without releasing it
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
