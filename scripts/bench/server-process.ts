/** What the benchmarks share: a real server in its own process, tokens for it, medians. */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/**
 * `node dist/cli/main.js serve` on `dataDir` and an ephemeral port (run `npm run build` first),
 * with `env` added to this process's environment.
 */
export async function startServerProcess(dataDir: string, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['dist/cli/main.js', 'serve', '--port', '0', '--data-dir', dataDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      const m = /listening on (\S+)/.exec(d.toString());
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return {
    url,
    /** A token for `user` (created on first use), signed with the server's key. */
    token: (user: string) =>
      execFileSync(process.execPath, ['dist/cli/main.js', 'token', 'create', '--user', user, '--data-dir', dataDir]).toString().trim(),
    /** Peak resident memory of the server process so far, from /proc (Linux). */
    peakRssMiB: () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024,
    stop: () => new Promise((resolve) => child.once('exit', resolve).kill('SIGTERM')),
  };
}
