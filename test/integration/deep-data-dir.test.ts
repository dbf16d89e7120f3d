import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';

// A VM's Unix sockets must fit 108 bytes: under a deep data directory they move to a directory
// of the system's temporary directory instead of keeping the server from starting.
describe('a data directory too deep for VM socket paths', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({}, { subdir: `${'deep/'.repeat(16)}data` });
  });
  afterAll(() => s?.stop());

  it('still serves, VM listing included', async () => {
    expect(s.dataDir.length).toBeGreaterThan(100);
    const token = await s.token('alice');
    const res = await s.api('/api/v1/vms', { token });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual([]);
  });
});
