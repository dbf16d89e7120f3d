/**
 * Snapshots of live VMs with real QEMU (TCG): a VM frozen at an instant runs on, VMs resumed
 * from the snapshot start from its memory and disk with their own identity, and a saved state
 * written out and read back (as a commit stores it) resumes too.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDomainError } from '../../src/domain/errors.js';
import type { DiskSource, SavedMachine, VmSnapshot, VmSpec } from '../../src/domain/ports/vm-runtime.js';
import type { ExportDisk } from '../../src/runtime/qemu/disk-export.js';
import { QemuRuntime, type QemuVm } from '../../src/runtime/qemu/qemu-runtime.js';
import { FileSource } from '../../src/runtime/qemu/qemu-snapshot.js';
import { buildVmAssets, quietLog } from '../support/vm-assets.js';
import { tempDir } from '../support/trees.js';

describe('QemuRuntime snapshots', () => {
  let dir: string;
  let baseImage: string;
  let base: DiskSource;
  let runtime: QemuRuntime;
  let parent: QemuVm;
  let snapshot: VmSnapshot;
  const children: QemuVm[] = [];

  const exportImage: ExportDisk = async () => ({ filename: baseImage, close: async () => undefined });
  const spec = (hostname: string, extra: Partial<VmSpec> = {}): VmSpec => ({
    id: randomUUID(),
    vcpuCount: 1,
    memSizeMib: 256,
    disk: base,
    identity: { hostname, machineId: randomUUID().replaceAll('-', '') },
    ...extra,
  });
  const run = async (vm: QemuVm, line: string) => {
    const result = await vm.exec({ command: ['/bin/sh', '-c', line] });
    expect(result.stderr.toString('utf8')).toBe('');
    expect(result.exitCode).toBe(0);
    return result.stdout.toString('utf8');
  };

  beforeAll(async () => {
    const assets = await buildVmAssets();
    dir = await tempDir('snapfork-qemu-snap-');
    baseImage = join(dir, 'rootfs.img');
    await copyFile(join(assets, 'rootfs.img'), baseImage);
    base = await FileSource.of(baseImage);
    runtime = await QemuRuntime.open({ runtimeDir: join(dir, 'vms'), memoryDir: join(dir, 'memory'), assetsDir: assets, exportDisk: exportImage, cgroups: 'auto', log: quietLog });
    parent = await runtime.start(spec('parent'));
    // /tmp is a tmpfs: the file lives in the guest's RAM only; /root is on the disk.
    await run(parent, 'echo in-memory > /tmp/memory.txt && echo on-disk > /root/disk.txt');
    snapshot = await parent.snapshot({ keepPaused: false, flushGuest: false });
  });

  afterAll(async () => {
    await snapshot?.release();
    await runtime?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('lets the VM run on after its snapshot, its later writes not in the snapshot', async () => {
    expect(parent.state()).toBe('running');
    await run(parent, 'echo later > /root/disk.txt');
    expect(await run(parent, 'cat /root/disk.txt')).toBe('later\n');
    const ranges = await snapshot.changedRanges();
    expect(ranges.length).toBeGreaterThan(0);
    expect(snapshot.disk.size).toBe(base.size);
    // Outside what the VM wrote, the snapshot's disk is the base disk byte for byte.
    const gapEnd = ranges[0]!.offset;
    if (gapEnd > 0) expect((await snapshot.disk.read(0, Math.min(gapEnd, 1 << 20))).equals(await base.read(0, Math.min(gapEnd, 1 << 20)))).toBe(true);
  });

  it('resumes VMs from the snapshot with its memory and disk, each with its own identity, diverging', async () => {
    children.push(...(await Promise.all([runtime.start(spec('child-1', { resume: snapshot })), runtime.start(spec('child-2', { resume: snapshot }))])));
    const ids = new Set<string>();
    for (const [index, child] of children.entries()) {
      expect(child.state()).toBe('running');
      expect(await run(child, 'cat /tmp/memory.txt /root/disk.txt')).toBe('in-memory\non-disk\n');
      const [machineId, hostname] = (await run(child, 'cat /etc/machine-id; hostname')).trim().split('\n');
      expect(hostname).toBe(`child-${index + 1}`);
      ids.add(machineId!);
    }
    ids.add((await run(parent, 'cat /etc/machine-id')).trim());
    expect(ids.size).toBe(3);
    await run(children[0]!, 'echo child-1 > /root/disk.txt');
    expect(await run(children[1]!, 'cat /root/disk.txt')).toBe('on-disk\n');
    expect(await run(children[0]!, 'cat /root/disk.txt')).toBe('child-1\n');
  });

  it('resumes a saved state written out and read back, as a commit keeps it, and refuses one of another format', async () => {
    const saved: SavedMachine = {
      format: snapshot.format,
      vcpuCount: snapshot.vcpuCount,
      memSizeMib: snapshot.memSizeMib,
      memory: snapshot.memory,
      deviceState: snapshot.deviceState,
    };
    const restored = await runtime.start(spec('restored', { disk: snapshot.disk, resume: saved }));
    children.push(restored);
    expect(await run(restored, 'cat /tmp/memory.txt /root/disk.txt; hostname')).toBe('in-memory\non-disk\nrestored\n');

    const refused = await runtime.start(spec('other', { disk: snapshot.disk, resume: { ...saved, format: 'qemu 1.0; another machine' } })).catch((e: unknown) => e);
    expect(isDomainError(refused) && refused.kind).toBe('unprocessable');
  });

  it('hands its RAM file to the last of the resumes announced: both run from it, no third resumes', async () => {
    const announced = await parent.snapshot({ keepPaused: false, flushGuest: false, resumes: 2 });
    const twins = await Promise.all([runtime.start(spec('twin-1', { resume: announced })), runtime.start(spec('twin-2', { resume: announced }))]);
    try {
      for (const twin of twins) expect(await run(twin, 'cat /tmp/memory.txt; hostname')).toBe(`in-memory\n${twin === twins[0] ? 'twin-1' : 'twin-2'}\n`);
      // The snapshot's RAM file is now the second twin's: it was renamed, not copied.
      expect(existsSync(announced.memoryFile)).toBe(false);
      await expect(runtime.start(spec('third', { resume: announced }))).rejects.toThrow(/handed its memory/);
    } finally {
      await announced.release();
      for (const twin of twins) await twin.stop();
    }
  });

  it('refuses a VM whose RAM the memory directory cannot hold, starting nothing', async () => {
    const tooBig = await runtime.start(spec('huge', { memSizeMib: 64 * 1024 * 1024 })).catch((e: unknown) => e);
    expect(isDomainError(tooBig) && tooBig.kind).toBe('insufficient_storage');
    expect((await readdir(join(dir, 'vms'))).sort()).toEqual([...new Set([parent.id, ...children.map((c) => c.id), 'disks', 'layers'])].sort());
  });

  it('keeps the layers the resumed VMs stand on until the last lets go, then frees them', async () => {
    await snapshot.release();
    await parent.stop();
    expect(await run(children[0]!, 'cat /tmp/memory.txt')).toBe('in-memory\n');
    expect((await readdir(join(dir, 'vms/layers'))).length).toBeGreaterThan(0);
    for (const child of children) await child.stop();
    expect(await readdir(join(dir, 'vms/layers'))).toEqual([]);
    expect(await readdir(join(dir, 'memory/snapshots'))).toEqual([]);
  });
});
