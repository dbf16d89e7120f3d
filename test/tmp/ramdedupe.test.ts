import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { copyFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'vitest';
import { chunkBuffer } from '../../src/domain/chunker.js';
import type { DiskSource, VmSpec } from '../../src/domain/ports/vm-runtime.js';
import type { ExportDisk } from '../../src/runtime/qemu/disk-export.js';
import { QemuRuntime } from '../../src/runtime/qemu/qemu-runtime.js';
import { fileSource } from '../../src/runtime/qemu/qemu-snapshot.js';
import { buildVmAssets } from '../support/vm-assets.js';
import { tempDir } from '../support/trees.js';

const h = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
it('ram dedupe', async () => {
  const assets = await buildVmAssets();
  const dir = await tempDir('snapfork-prof-');
  const baseImage = join(dir, 'rootfs.img');
  await copyFile(join(assets, 'rootfs.img'), baseImage);
  const base: DiskSource = await fileSource(baseImage);
  const exportImage: ExportDisk = async () => ({ filename: baseImage, close: async () => undefined });
  const spec = (extra: Partial<VmSpec> = {}): VmSpec => ({ id: randomUUID(), vcpuCount: 1, memSizeMib: 256, disk: base, identity: { hostname: 'h', machineId: randomUUID().replaceAll('-', '') }, ...extra });
  const runtime = await QemuRuntime.open({ runtimeDir: join(dir, 'vms'), memoryDir: join(dir, 'memory'), assetsDir: assets, exportDisk: exportImage });
  const vm = await runtime.start(spec());
  const data = randomBytes(10 * 1024 * 1024);
  await vm.writeFile('/root/f', data, { mode: 0o644, createDirs: false });
  await vm.exec({ command: ['sync'] });
  const snap = await vm.snapshot({ keepPaused: false, flushGuest: true });
  const ram = await snap.memory.read(0, snap.memory.size);
  const dataChunks = new Set(chunkBuffer(data).map(h));
  let nonzeroFixed = 0; let fixedBytes = 0;
  const Z = Buffer.alloc(256 * 1024);
  for (let o = 0; o < ram.length; o += 256 * 1024) { const b = ram.subarray(o, o + 256 * 1024); if (!b.equals(Z)) { nonzeroFixed++; fixedBytes += b.length; } }
  let cdcOther = 0; let cdcShared = 0; let cdcZero = 0;
  for (const c of chunkBuffer(ram)) { if (c.every((x) => x === 0)) cdcZero += c.length; else if (dataChunks.has(h(c))) cdcShared += c.length; else cdcOther += c.length; }
  console.log(`fixed non-zero ${fixedBytes / 1048576} MiB; cdc shared-with-file ${(cdcShared / 1048576).toFixed(1)} other ${(cdcOther / 1048576).toFixed(1)} zero ${(cdcZero / 1048576).toFixed(1)}`);
  // does the file appear contiguous in RAM? search for first 4 KiB page
  let found = 0; for (let p = 0; p < 2560; p += 256) { if (ram.indexOf(data.subarray(p * 4096, p * 4096 + 4096)) >= 0) found++; }
  console.log('pages found', found, 'of 10');
  await snap.release(); await vm.stop(); await runtime.close(); await rm(dir, { recursive: true, force: true });
}, 120_000);
