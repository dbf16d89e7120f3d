import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';

describe('loadConfig: VMs', () => {
  it('defaults to 8 running VMs, 4 per owner, and the guest assets in the data directory', () => {
    const config = loadConfig({}, { dataDir: '/srv/snapfork' });
    expect(config.vms).toEqual({ assetsDir: join('/srv/snapfork', 'vm-assets'), maxRunning: 8, maxRunningPerOwner: 4 });
  });

  it('reads SNAPFORK_VM_ASSETS and the caps, 0 running none; anything but a whole number is refused at start', () => {
    const config = loadConfig({ SNAPFORK_VM_ASSETS: 'assets', SNAPFORK_VM_MAX_RUNNING: '0', SNAPFORK_VM_MAX_RUNNING_PER_OWNER: '2' });
    expect(config.vms).toEqual({ assetsDir: resolve('assets'), maxRunning: 0, maxRunningPerOwner: 2 });
    for (const raw of ['-1', '1.5', 'many', '']) {
      expect(() => loadConfig({ SNAPFORK_VM_MAX_RUNNING_PER_OWNER: raw })).toThrow(`SNAPFORK_VM_MAX_RUNNING_PER_OWNER must be a non-negative integer, got "${raw}"`);
    }
    expect(() => loadConfig({ SNAPFORK_IDLE_TIMEOUT_MS: '0' })).toThrow('SNAPFORK_IDLE_TIMEOUT_MS must be a positive integer, got "0"');
  });
});
