/**
 * FsExecLogStore over a real directory with tiny segments: the log keeps its newest segments,
 * drops the oldest whole, and offsets never move, as GET /api/v1/vm/{id}/logs relies on.
 */
import { randomUUID } from 'node:crypto';
import { appendFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { ExecLogRecord } from '../../src/domain/ports/exec-log.js';
import { FsExecLogStore } from '../../src/store/fs/exec-log-store.js';
import { tempDir } from '../support/trees.js';

let dir: string;
beforeEach(async () => void (dir = await tempDir('snapfork-execlog-')));
afterEach(() => rm(dir, { recursive: true, force: true }));

const output = (n: number): ExecLogRecord => ({
  kind: 'output',
  execId: 'e',
  cursor: n,
  stream: n % 2 ? 'stdout' : 'stderr',
  data: Buffer.from(`piece ${n}\n`),
  timestamp: '2026-01-01T00:00:00.000Z',
});
const numbers = (records: ExecLogRecord[]) => records.map((r) => r.cursor);

it('drops the oldest segment once a third would start; offsets of what is kept do not move', async () => {
  const vm = randomUUID();
  // Each record is ~110 bytes: three fit a 400-byte segment.
  const logs = new FsExecLogStore(dir, 400);
  for (let n = 1; n <= 3; n++) await logs.append(vm, [output(n)]);
  const first = await logs.read(vm, 0, 1);
  expect(numbers(first.records)).toEqual([1]);
  const secondAt = first.nextOffset;

  for (let n = 4; n <= 9; n++) await logs.append(vm, [output(n)]);
  expect(await readdir(join(dir, vm))).toHaveLength(2);
  // Records 1-3 are gone: a read from 0 starts at the oldest kept, 4.
  const all = await logs.read(vm, 0, 100);
  expect(numbers(all.records)).toEqual([4, 5, 6, 7, 8, 9]);
  expect(all.eof).toBe(true);
  // An offset inside a record reads from the next one; offsets only grow.
  expect(numbers((await logs.read(vm, secondAt + 1, 100)).records)).toEqual([4, 5, 6, 7, 8, 9]);
  const fromFive = await logs.read(vm, (await logs.read(vm, 0, 1)).nextOffset, 2);
  expect(numbers(fromFive.records)).toEqual([5, 6]);
  expect(fromFive.eof).toBe(false);
  expect(await logs.read(vm, all.nextOffset + 50, 10)).toEqual({ records: [], nextOffset: all.nextOffset, eof: true });
});

it('reads a VM without a log as empty, skips a torn line, removes a log', async () => {
  const vm = randomUUID();
  const logs = new FsExecLogStore(dir);
  expect(await logs.read(vm, 0, 10)).toEqual({ records: [], nextOffset: 0, eof: true });
  await logs.append(vm, [output(1)]);
  // A crash mid-append leaves half a line; the next record lands after it, on the same line.
  const [segment] = await readdir(join(dir, vm));
  await appendFile(join(dir, vm, segment!), '{"timestamp":"2026');
  await logs.append(vm, [output(2), { kind: 'exit', execId: 'e', cursor: 3, exitCode: 0, timestamp: 't' }]);
  expect((await logs.read(vm, 0, 10)).records.map((r) => r.kind + r.cursor)).toEqual(['output1', 'exit3']);
  await logs.remove(vm);
  await logs.remove(vm);
  expect(await readdir(dir)).toEqual([]);
  await expect(logs.read('../x', 0, 1)).rejects.toMatchObject({ kind: 'invalid' });
});
