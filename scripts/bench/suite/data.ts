/**
 * The performance suite's two data sets (issue 15), made from a seed (no downloads), each in a
 * version 1 and a version 2:
 * - dataset: ~20,000 files per GiB: binary blobs of 20-200 KiB (incompressible, as images are),
 *   CSV tables of 1-32 KiB and one large CSV (5% of the bytes). v2: 2% of the files changed
 *   (a CSV gains rows in its middle, a blob has 4 KiB rewritten), 1% added, 1% deleted, and the
 *   large CSV appended (1% of its size).
 * - VM image: a raw ext4 image made with `mke2fs -t ext4 -d` from this machine's /usr files
 *   (about 70% full). v2: 1% of it rewritten in ten regions, at 4 KiB-aligned offsets.
 */
import { execFileSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { appendFile, copyFile, mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { seededRandom } from '../../../test/support/seeded-random.js';

const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliett', 'kilo', 'lima'];
const LARGE_CSV = join('tables', 'events.csv');

/** `size` bytes of a CSV table: an id, a timestamp, a label and two measures per row. */
function csvTable(size: number, next: () => number, firstId: number, header = true): Buffer {
  const rows = header ? ['id,timestamp,label,value,score\n'] : [];
  let length = rows[0]?.length ?? 0;
  for (let id = firstId; length < size; id++) {
    const row = `${id},${1_700_000_000 + Math.floor(next() * 1e7)},${WORDS[Math.floor(next() * WORDS.length)]},${(next() * 1000).toFixed(3)},${Math.floor(next() * 100)}\n`;
    rows.push(row);
    length += row.length;
  }
  return Buffer.from(rows.join('')).subarray(0, size);
}

/** Incompressible bytes from a seed: AES-128-CTR of zeros. */
function blobMaker(seed: number): (size: number) => Buffer {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, seed), Buffer.alloc(16));
  return (size) => cipher.update(Buffer.alloc(size));
}

/** Writes the dataset's version 1 under `dir`; answers its bytes and files. */
export async function writeDataset(dir: string, size: number): Promise<{ bytes: number; files: number }> {
  const next = seededRandom(15);
  const blob = blobMaker(15);
  const large = Math.floor(size * 0.05);
  await mkdir(join(dir, 'tables'), { recursive: true });
  await writeFile(join(dir, LARGE_CSV), csvTable(large, next, 0));
  let bytes = large;
  let files = 1;
  // 40% blobs (mean 110 KiB), 60% tables (mean 16.5 KiB): ~20,000 files per GiB.
  while (bytes < size) {
    const isBlob = next() < 0.4;
    const fileSize = Math.min(size - bytes, Math.floor(isBlob ? 20_480 + next() * 184_320 : 1024 + next() * 31_744));
    const shard = join(dir, `shard-${String(Math.floor(files / 200)).padStart(3, '0')}`);
    if (files % 200 === 0 || files === 1) await mkdir(shard, { recursive: true });
    const name = join(shard, `item-${String(files).padStart(5, '0')}.${isBlob ? 'bin' : 'csv'}`);
    await writeFile(name, isBlob ? blob(fileSize) : csvTable(fileSize, next, files * 1000));
    bytes += fileSize;
    files++;
  }
  return { bytes, files };
}

/** Every file under `dir`, relative to it, in name order. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

/** Turns a copy of the dataset's version 1 in `dir` into version 2, as described above. */
export async function changeDataset(dir: string): Promise<void> {
  const next = seededRandom(16);
  const blob = blobMaker(16);
  const files = (await filesUnder(dir)).filter((f) => f !== LARGE_CSV);
  const pick = (share: number) => files.filter(() => next() < share);
  for (const file of pick(0.02)) {
    const path = join(dir, file);
    if (file.endsWith('.csv')) {
      const old = await readFile(path);
      const middle = old.indexOf('\n', old.length >> 1) + 1;
      await writeFile(path, Buffer.concat([old.subarray(0, middle), csvTable(512, next, 9_000_000, false), old.subarray(middle)]));
    } else {
      const handle = await open(path, 'r+');
      const { size } = await handle.stat();
      await handle.write(blob(4096), 0, 4096, Math.floor(next() * Math.max(1, size - 4096)));
      await handle.close();
    }
  }
  for (const file of pick(0.01)) await rm(join(dir, file));
  const added = Math.round(files.length * 0.01);
  await mkdir(join(dir, 'added'), { recursive: true });
  for (let i = 0; i < added; i++) {
    const isBlob = next() < 0.4;
    const size = Math.floor(isBlob ? 20_480 + next() * 184_320 : 1024 + next() * 31_744);
    await writeFile(join(dir, 'added', `item-${i}.${isBlob ? 'bin' : 'csv'}`), isBlob ? blob(size) : csvTable(size, next, i * 1000));
  }
  const { size: largeSize } = await stat(join(dir, LARGE_CSV));
  await appendFile(join(dir, LARGE_CSV), csvTable(Math.floor(largeSize / 100), next, 5_000_000, false));
}

/**
 * The VM image's version 1: a raw ext4 image of `size` bytes at `image` holding this machine's
 * /usr files (walked in name order) up to 70% of it, made with mke2fs -d from a copy of them
 * under `staging` (removed after).
 */
export async function writeVmImage(image: string, staging: string, size: number): Promise<void> {
  let budget = Math.floor(size * 0.7);
  const walk = async (dir: string): Promise<void> => {
    const names = (await readdir(dir, { withFileTypes: true }).catch(() => [])).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of names) {
      if (budget <= 0) return;
      const path = join(dir, e.name);
      if (e.isDirectory()) await walk(path);
      else if (e.isFile()) {
        const { size: fileSize } = await stat(path);
        if (fileSize > budget) continue;
        const target = join(staging, relative('/', path));
        await mkdir(dirname(target), { recursive: true });
        await copyFile(path, target);
        budget -= fileSize;
      }
    }
  };
  await walk('/usr');
  await mkdir(dirname(image), { recursive: true });
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', staging, image, `${size / 1024}k`]);
  await rm(staging, { recursive: true });
}

/** Turns a copy of the image's version 1 into version 2: 1% of it rewritten in ten regions. */
export async function changeVmImage(image: string): Promise<void> {
  const next = seededRandom(17);
  const blob = blobMaker(17);
  const handle = await open(image, 'r+');
  const { size } = await handle.stat();
  const region = Math.floor(size / 1000 / 4096) * 4096;
  for (let i = 0; i < 10; i++) {
    const offset = Math.floor((next() * (size - region)) / 4096) * 4096;
    await handle.write(blob(region), 0, region, offset);
  }
  await handle.close();
}
