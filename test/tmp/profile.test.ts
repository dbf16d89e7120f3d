import { randomUUID } from 'node:crypto';
import { copyFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'vitest';
import type { DiskSource, VmSpec } from '../../src/domain/ports/vm-runtime.js';
import type { ExportDisk } from '../../src/runtime/qemu/disk-export.js';
import { QemuRuntime } from '../../src/runtime/qemu/qemu-runtime.js';
import { fileSource } from '../../src/runtime/qemu/qemu-snapshot.js';
import { buildVmAssets } from '../support/vm-assets.js';
import { tempDir } from '../support/trees.js';

it('profile branch', async () => {
  const assets = await buildVmAssets();
  const dir = await tempDir('snapfork-prof-');
  const baseImage = join(dir, 'rootfs.img');
  await copyFile(join(assets, 'rootfs.img'), baseImage);
  const base: DiskSource = await fileSource(baseImage);
  const exportImage: ExportDisk = async () => ({ filename: baseImage, close: async () => undefined });
  const spec = (extra: Partial<VmSpec> = {}): VmSpec => ({ id: randomUUID(), vcpuCount: 1, memSizeMib: 256, disk: base, identity: { hostname: 'h', machineId: randomUUID().replaceAll('-', '') }, ...extra });
  const runtime = await QemuRuntime.open({ runtimeDir: join(dir, 'vms'), memoryDir: join(dir, 'memory'), assetsDir: assets, exportDisk: exportImage });
  const parent = await runtime.start(spec());
  await parent.exec({ command: ['/bin/sh', '-c', 'echo hi > /tmp/x'] });
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now();
    const snap = await parent.snapshot({ keepPaused: false, flushGuest: false, resumes: 1 });
    const t1 = performance.now();
    const child = await runtime.start(spec({ resume: snap }));
    const t2 = performance.now();
    await snap.release();
    await child.exec({ command: ['true'] });
    const t3 = performance.now();
    console.log(`snapshot ${(t1 - t0).toFixed(0)} start ${(t2 - t1).toFixed(0)} total ${(t2 - t0).toFixed(0)} first-exec ${(t3 - t2).toFixed(0)}`);
    await child.stop();
  }
  await runtime.close();
  await rm(dir, { recursive: true, force: true });
}, 120_000);
