/**
 * Takes the README's screenshots of every page of the web UI (docs/ui/*.png) in Debian's
 * chromium, against a test server filled with a small sample: a public dataset forked twice and
 * forked again, a private repository, a sleeping VM. Run with `npm run screenshots`.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import type { Browser, Page } from '@playwright/test';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { launchChromium } from '../../test/support/browser.js';
import { startTestServer, type TestServer } from '../../test/support/server.js';

const OUT = new URL('../../docs/ui/', import.meta.url);

let s: TestServer;
let browser: Browser;
const tokens: Record<string, string> = {};

async function fork(token: string, source: string, name: string) {
  const res = await s.api(`/api/v1/repos/${source}/forks`, { method: 'POST', token, json: { name } });
  expect(res.status).toBe(201);
}

beforeAll(async () => {
  s = await startTestServer();
  for (const user of ['alice', 'bob', 'carol']) tokens[user] = await s.token(user);
  tokens.root = await s.token('root', { scopes: ['repo:read', 'repo:write', 'admin'] });
  const { alice, bob, carol } = tokens as Record<'alice' | 'bob' | 'carol', string>;
  const readings = randomBytes(512 * 1024);
  await s.createRepo(alice, 'weather', 'public');
  await s.pushFiles(alice, 'alice/weather', 'v1', {
    'README.md': '# Weather\n\nDaily temperatures and rainfall of 40 stations, 1990-2024.\n',
    'data/temps.csv': 'station,day,temp_c\nOSL,1990-01-01,-4.2\nOSL,1990-01-02,-6.0\nBER,1990-01-01,1.3\n',
    'data/readings.bin': readings,
  });
  await s.pushFiles(alice, 'alice/weather', 'v2', {
    'README.md': '# Weather\n\nDaily temperatures and rainfall of 42 stations, 1990-2024.\n',
    'data/temps.csv': 'station,day,temp_c\nOSL,1990-01-01,-4.2\nOSL,1990-01-02,-6.0\nBER,1990-01-01,1.3\nPAR,1990-01-01,4.8\n',
    'data/readings.bin': readings,
    'data/stations.json': '[{"id":"OSL"},{"id":"BER"},{"id":"PAR"}]\n',
  });
  await s.createRepo(alice, 'climate-model', 'private');
  await s.pushFiles(alice, 'alice/climate-model', 'draft', { 'model.py': 'print("hello")\n' });
  await fork(bob, 'alice/weather', 'weather-nordic');
  await s.pushFiles(bob, 'bob/weather-nordic', 'nordic', { 'data/readings.bin': readings, 'data/nordic.bin': randomBytes(128 * 1024) });
  await fork(carol, 'alice/weather', 'weather');
  await fork(carol, 'bob/weather-nordic', 'nordic-clean');
  const vm = await s.api('/api/v1/repositories/fork', {
    method: 'POST',
    token: bob,
    json: { source_org: 'alice', source_repo: 'weather', source_tag: 'v2', repo_name: 'weather-sandbox', tag_name: 'v2' },
  });
  expect(vm.status).toBe(201);
  await mkdir(OUT, { recursive: true });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

async function signedIn(user: string | undefined, width = 1280): Promise<Page> {
  const context = await browser.newContext({ baseURL: s.url, viewport: { width, height: 800 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  if (user) {
    await page.goto('/ui/sign-in');
    await page.getByLabel('Your token').fill(tokens[user]!);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/notice=signed-in/);
  }
  return page;
}

async function shot(page: Page, path: string, name: string) {
  await page.goto(path);
  await page.screenshot({ path: new URL(`${name}.png`, OUT).pathname, fullPage: true });
}

it('takes a screenshot of every page', async () => {
  const visitor = await signedIn(undefined);
  await shot(visitor, '/ui/', 'catalogue');
  await shot(visitor, '/ui/sign-in', 'sign-in');
  const bob = await signedIn('bob');
  await shot(bob, '/ui/repos/alice/weather', 'repository');
  await shot(bob, '/ui/repos/alice/weather/tags/v2/tree?path=data', 'tree');
  await shot(bob, '/ui/repos/alice/weather/tags/v2/file?path=data/temps.csv', 'file');
  await shot(bob, '/ui/repos/bob/weather-nordic/network', 'network');
  await shot(bob, '/ui/repos/bob/weather-nordic/storage', 'storage-repository');
  await shot(bob, '/ui/vms', 'vms');
  const root = await signedIn('root');
  await shot(root, '/ui/storage', 'storage-store');
  const phone = await signedIn('bob', 375);
  await shot(phone, '/ui/repos/alice/weather', 'repository-phone');
});
