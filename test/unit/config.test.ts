import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';

describe('loadConfig: VMs', () => {
  it('defaults to 8 running VMs, 4 per owner, datasets of 1 GiB at /data, cgroups where writable, and the guest assets in the data directory', () => {
    const config = loadConfig({}, { dataDir: '/srv/snapfork' });
    expect(config.vms).toEqual({ assetsDir: join('/srv/snapfork', 'vm-assets'), maxRunning: 8, maxRunningPerOwner: 4, maxDatasetBytes: 1024 ** 3, cgroups: 'auto' });
  });

  it('reads SNAPFORK_VM_ASSETS and the caps, 0 running none; anything but a whole number is refused at start', () => {
    const config = loadConfig({ SNAPFORK_VM_ASSETS: 'assets', SNAPFORK_VM_MAX_RUNNING: '0', SNAPFORK_VM_MAX_RUNNING_PER_OWNER: '2', SNAPFORK_VM_MAX_DATASET_BYTES: '1000', SNAPFORK_VM_CGROUPS: 'off' });
    expect(config.vms).toEqual({ assetsDir: resolve('assets'), maxRunning: 0, maxRunningPerOwner: 2, maxDatasetBytes: 1000, cgroups: 'off' });
    expect(() => loadConfig({ SNAPFORK_VM_CGROUPS: 'on' })).toThrow('SNAPFORK_VM_CGROUPS must be auto or off, got "on"');
    expect(() => loadConfig({ SNAPFORK_VM_MAX_DATASET_BYTES: '0' })).toThrow('SNAPFORK_VM_MAX_DATASET_BYTES must be a positive integer, got "0"');
    for (const raw of ['-1', '1.5', 'many', '']) {
      expect(() => loadConfig({ SNAPFORK_VM_MAX_RUNNING_PER_OWNER: raw })).toThrow(`SNAPFORK_VM_MAX_RUNNING_PER_OWNER must be a non-negative integer, got "${raw}"`);
    }
    expect(() => loadConfig({ SNAPFORK_IDLE_TIMEOUT_MS: '0' })).toThrow('SNAPFORK_IDLE_TIMEOUT_MS must be a positive integer, got "0"');
  });
});

describe('loadConfig: metadata database', () => {
  it('keeps SQLite in the data directory unless SNAPFORK_DATABASE_URL names a PostgreSQL database', () => {
    expect(loadConfig({}, { dataDir: '/srv/snapfork' }).databaseUrl).toBeUndefined();
    const url = 'postgres://snapfork:secret@127.0.0.1:54329/snapfork';
    expect(loadConfig({ SNAPFORK_DATABASE_URL: url }).databaseUrl).toBe(url);
    expect(loadConfig({ SNAPFORK_DATABASE_URL: 'postgresql://db.internal/meta' }).databaseUrl).toBe('postgresql://db.internal/meta');
    for (const raw of ['mysql://u:hunter2@host/db', 'postgres://u:hunter2@host', 'postgres://u:hunter2@host/', 'not a url hunter2']) {
      const load = () => loadConfig({ SNAPFORK_DATABASE_URL: raw });
      expect(load).toThrow('SNAPFORK_DATABASE_URL must be a PostgreSQL URL naming a database');
      // The password stays out of the message, which ends up in logs.
      expect(load).not.toThrow('hunter2');
    }
  });
});

describe('loadConfig: S3', () => {
  const complete = {
    SNAPFORK_S3_ENDPOINT: 'http://127.0.0.1:17480',
    SNAPFORK_S3_BUCKET: 'snapfork',
    SNAPFORK_S3_ACCESS_KEY_ID: 'AK',
    SNAPFORK_S3_SECRET_ACCESS_KEY: 'SK',
  };

  it('has no S3 section without SNAPFORK_S3_* variables, and reads a complete set with its defaults', () => {
    expect(loadConfig({}).s3).toBeUndefined();
    expect(loadConfig(complete).s3).toEqual({
      endpoint: 'http://127.0.0.1:17480',
      bucket: 'snapfork',
      region: 'us-east-1',
      accessKeyId: 'AK',
      secretAccessKey: 'SK',
      forcePathStyle: false,
      prefix: '',
    });
    const s3 = loadConfig({ ...complete, SNAPFORK_S3_REGION: 'default', SNAPFORK_S3_FORCE_PATH_STYLE: 'true', SNAPFORK_S3_PREFIX: '/team-a/' }).s3;
    expect(s3).toMatchObject({ region: 'default', forcePathStyle: true, prefix: 'team-a/' });
  });

  it('refuses a half-configured set at start, naming what is missing', () => {
    expect(() => loadConfig({ SNAPFORK_S3_ENDPOINT: 'http://127.0.0.1:17480', SNAPFORK_S3_BUCKET: 'b' })).toThrow(
      'S3 storage is half configured: SNAPFORK_S3_ENDPOINT, SNAPFORK_S3_BUCKET set but SNAPFORK_S3_ACCESS_KEY_ID, SNAPFORK_S3_SECRET_ACCESS_KEY missing',
    );
    expect(() => loadConfig({ SNAPFORK_S3_REGION: 'default' })).toThrow(/half configured: SNAPFORK_S3_REGION set but SNAPFORK_S3_ENDPOINT, SNAPFORK_S3_BUCKET/);
    expect(() => loadConfig({ ...complete, SNAPFORK_S3_SECRET_ACCESS_KEY: '' })).toThrow(/SNAPFORK_S3_SECRET_ACCESS_KEY missing/);
    expect(() => loadConfig({ ...complete, SNAPFORK_S3_ENDPOINT: '127.0.0.1:17480' })).toThrow('SNAPFORK_S3_ENDPOINT must be an http(s) URL');
    expect(() => loadConfig({ ...complete, SNAPFORK_S3_FORCE_PATH_STYLE: 'yes' })).toThrow('SNAPFORK_S3_FORCE_PATH_STYLE must be true or false, got "yes"');
    expect(() => loadConfig({ ...complete, SNAPFORK_S3_PREFIX: 'Team A' })).toThrow('SNAPFORK_S3_PREFIX may hold only');
  });
});

describe('loadConfig: logs', () => {
  it('logs at info unless SNAPFORK_LOG_LEVEL names a pino level or silent; anything else is refused at start', () => {
    expect(loadConfig({}).logLevel).toBe('info');
    for (const level of ['debug', 'error', 'silent'] as const) expect(loadConfig({ SNAPFORK_LOG_LEVEL: level }).logLevel).toBe(level);
    for (const raw of ['INFO', 'verbose', '']) {
      expect(() => loadConfig({ SNAPFORK_LOG_LEVEL: raw })).toThrow(`SNAPFORK_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "${raw}"`);
    }
  });
});

describe('loadConfig: zstd', () => {
  it('leaves the zstd build to what loads unless SNAPFORK_ZSTD names native or wasm; anything else is refused at start', () => {
    expect(loadConfig({}).zstd).toBeUndefined();
    for (const implementation of ['native', 'wasm'] as const) expect(loadConfig({ SNAPFORK_ZSTD: implementation }).zstd).toBe(implementation);
    for (const raw of ['WASM', 'auto', '']) expect(() => loadConfig({ SNAPFORK_ZSTD: raw })).toThrow(`SNAPFORK_ZSTD must be native or wasm, got "${raw}"`);
  });
});
