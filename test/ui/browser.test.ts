/**
 * The web UI in a real browser (Debian's chromium through Playwright): browsing as a visitor and
 * signed in, a private repository invisible to outsiders, a fork made through the form and seen
 * in the fork network, a tag deleted, the API's errors in words, a write without the CSRF token
 * refused, the storage and VM pages, and pages that fit a 375px phone with every field labelled.
 */
import { randomBytes } from 'node:crypto';
import type { Browser, BrowserContext, Page } from '@playwright/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../support/browser.js';
import { startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;
let browser: Browser;
let alice: string;
let bob: string;
let admin: string;

beforeAll(async () => {
  s = await startTestServer();
  [alice, bob, admin] = await Promise.all([s.token('alice'), s.token('bob'), s.token('root', { scopes: ['repo:read', 'repo:write', 'admin'] })]);
  await s.createRepo(alice, 'weather', 'public');
  await s.pushFiles(alice, 'alice/weather', 'v1', { 'readme.md': '# Weather\nDaily temperatures.\n', 'data/temps.csv': 'day,temp\n1,12\n' });
  await s.pushFiles(alice, 'alice/weather', 'v2', {
    'readme.md': '# Weather\nDaily temperatures, now with stations.\n',
    'data/temps.csv': 'day,temp\n1,12\n2,14\n',
    'data/stations.bin': randomBytes(200 * 1024),
  });
  await s.createRepo(alice, 'secret', 'private');
  await s.pushFiles(alice, 'alice/secret', 'v1', { 'plan.txt': 'private plans\n' });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

/** A fresh browser context (its own cookies), signed in with `token` when given. */
async function visit(token?: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ baseURL: s.url });
  const page = await context.newPage();
  if (token !== undefined) {
    await page.goto('/ui/sign-in');
    await page.getByLabel('Your token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.locator('.who').textContent()).toContain('Signed in as');
  }
  return { context, page };
}

const heading = (page: Page) => page.locator('h1').first().textContent();

describe('the web UI in chromium', () => {
  it('lets a visitor browse the public catalogue, a repository, its files and a tag’s history', async () => {
    const { context, page } = await visit();
    await page.goto('/ui/');
    await expect.poll(() => heading(page)).toBe('Repositories');
    expect(await page.getByRole('link', { name: 'alice/weather', exact: true }).count()).toBe(1);
    expect(await page.getByRole('link', { name: 'alice/secret', exact: true }).count()).toBe(0);
    expect(await page.locator('tr', { hasText: 'alice/weather' }).locator('.badge-public').textContent()).toBe('public');

    await page.getByLabel('Search by repository or namespace name').fill('weath');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('link', { name: 'alice/weather', exact: true }).click();
    expect(await heading(page)).toContain('alice/weather');
    const tags = page.locator('table.tags tbody th');
    expect(await tags.allTextContents()).toEqual(['v1 default', 'v2']);
    // A visitor is offered sign-in, not the forms.
    expect(await page.getByRole('button', { name: 'Fork' }).count()).toBe(0);

    await page.locator('tr', { hasText: 'v2' }).getByRole('link', { name: 'Files' }).click();
    await page.getByRole('link', { name: 'data/' }).click();
    expect(await page.locator('tbody tr').locator('th, td').allTextContents()).toEqual(['stations.bin', 'file', '200 KiB', 'temps.csv', 'file', '19 B']);
    await page.getByRole('link', { name: 'temps.csv' }).click();
    expect(await page.locator('pre.preview').textContent()).toBe('day,temp\n1,12\n2,14\n');
    await page.goBack();
    await page.getByRole('link', { name: 'stations.bin' }).click();
    expect(await page.locator('.empty').textContent()).toContain('A binary file');
    expect(await page.locator('code.digest').textContent()).toMatch(/^sha256-[0-9a-f]{64}$/);

    // v2 was pushed once, as a new tag: a history of one commit, the one the tag points at.
    await page.goto('/ui/repos/alice/weather/tags/v2/history');
    expect(await page.locator('tbody tr').count()).toBe(1);
    const [v2] = await (await s.api('/api/v1/repos/alice/weather/tags')).json().then((tags: { name: string; commit_id: string }[]) => tags.filter((t) => t.name === 'v2'));
    expect(await page.locator('tbody tr code').getAttribute('title')).toBe(v2!.commit_id);
    await context.close();
  });

  it('hides a private repository from a visitor and from another user, and shows it to its owner', async () => {
    for (const token of [undefined, bob]) {
      const { context, page } = await visit(token);
      const res = await page.goto('/ui/repos/alice/secret');
      expect(res?.status()).toBe(404);
      expect(await heading(page)).toBe('Not found');
      await page.goto('/ui/?q=secret');
      expect(await page.getByRole('link', { name: 'alice/secret', exact: true }).count()).toBe(0);
      await context.close();
    }
    const { context, page } = await visit(alice);
    await page.goto('/ui/?q=secret');
    await page.getByRole('link', { name: 'alice/secret', exact: true }).click();
    expect(await page.locator('h1 .badge-private').textContent()).toBe('private');
    await context.close();
  });

  it('forks through the form and shows the new fork in the fork network, with what it shares', async () => {
    const { context, page } = await visit(bob);
    await page.goto('/ui/repos/alice/weather');
    await page.getByLabel('Into namespace').fill('bob');
    await page.getByLabel('Name of the fork').fill('weather-bob');
    await page.getByLabel('Visibility').selectOption('public');
    await page.getByRole('button', { name: 'Fork' }).click();
    await expect.poll(() => new URL(page.url()).pathname).toBe('/ui/repos/bob/weather-bob');
    expect(await page.locator('.notice').textContent()).toBe('Forked from alice/weather: this is the new repository.');
    expect(await page.locator('main').textContent()).toContain('Fork of alice/weather');

    await page.getByRole('link', { name: 'Fork network' }).click();
    const graph = page.locator('svg.graph');
    const fork = graph.locator('a[data-repo="bob/weather-bob"]');
    expect(await fork.count()).toBe(1);
    expect(await fork.getAttribute('class')).toContain('focus');
    // The fork holds nothing of its own: everything its tags reach is its source's.
    expect(await fork.locator('text.figures').textContent()).toMatch(/^shares [\d.]+ KiB · own 0 B$/);
    expect(await graph.locator('a[data-repo="alice/weather"] text.figures').textContent()).toMatch(/^stores /);
    expect(await graph.locator('.links path').count()).toBe(1);
    // A click on a node opens that repository.
    await graph.locator('a[data-repo="alice/weather"]').click();
    await expect.poll(() => new URL(page.url()).pathname).toBe('/ui/repos/alice/weather');
    await context.close();
  });

  it('deletes a tag after the confirmation, and keeps it when the question is declined', async () => {
    const { context, page } = await visit(bob);
    await page.goto('/ui/repos/bob/weather-bob');
    const deleteV1 = page.getByRole('button', { name: 'Delete tag v1' });
    page.once('dialog', (dialog) => void dialog.dismiss());
    await deleteV1.click();
    expect(await page.locator('table.tags tbody th', { hasText: 'v1' }).count()).toBe(1);

    page.once('dialog', (dialog) => {
      expect(dialog.message()).toBe('Delete tag v1 of bob/weather-bob?');
      void dialog.accept();
    });
    await deleteV1.click();
    await expect.poll(() => page.locator('.notice').textContent()).toBe('Tag v1 deleted.');
    // v1 was the fork's default tag: it has none now.
    expect(await page.locator('table.tags tbody th').allTextContents()).toEqual(['v2']);
    const tags = await (await s.api('/api/v1/repos/bob/weather-bob/tags', { token: bob })).json();
    expect(tags.map((t: { name: string }) => t.name)).toEqual(['v2']);
    await context.close();
  });

  it('shows the API’s error in words: a fork onto a taken name', async () => {
    const { context, page } = await visit(bob);
    await page.goto('/ui/repos/alice/weather');
    await page.getByLabel('Name of the fork').fill('weather-bob');
    await page.getByRole('button', { name: 'Fork' }).click();
    await expect.poll(() => heading(page)).toBe('Conflict');
    expect(await page.getByRole('alert').textContent()).toContain('Repository bob/weather-bob already exists');
    await page.getByRole('link', { name: 'Go back' }).click();
    expect(await heading(page)).toContain('alice/weather');
    await context.close();
  });

  it('refuses a write without the CSRF token with 403, even with the session’s cookie', async () => {
    const { context, page } = await visit(bob);
    // The context's request API sends the browser's cookies, as a forged cross-site form would not even manage to.
    const res = await context.request.post('/ui/repos/bob/weather-bob/tags/v2/delete', { form: { confirm: 'yes' }, maxRedirects: 0 });
    expect(res.status()).toBe(403);
    expect(await res.text()).toContain('security (CSRF) token');
    await page.goto('/ui/repos/bob/weather-bob');
    expect(await page.locator('table.tags tbody th').allTextContents()).toEqual(['v2']);
    await context.close();
  });

  it('shows storage: a repository’s share with its source, and the store’s figures to administrators only', async () => {
    const { context, page } = await visit(bob);
    await page.goto('/ui/repos/bob/weather-bob/storage');
    expect(await page.locator('#share-heading').textContent()).toBe('Shared with its source');
    expect(Number(await page.locator('meter').getAttribute('value'))).toBeGreaterThan(200 * 1024);
    await page.getByRole('link', { name: 'Storage', exact: true }).first().click();
    expect(await page.locator('main').textContent()).toContain('for site administrators');
    await context.close();

    const asAdmin = await visit(admin);
    await asAdmin.page.goto('/ui/storage');
    const figures = await asAdmin.page.locator('dl.figures dt').allTextContents();
    expect(figures).toEqual(expect.arrayContaining(['Logical bytes', 'Bytes stored', 'Dedup ratio']));
    await asAdmin.context.close();
  });

  it('lists the caller’s VMs with their commit, commits one, and deletes one', async () => {
    const res = await s.api('/api/v1/repositories/fork', {
      method: 'POST',
      token: bob,
      json: { source_org: 'alice', source_repo: 'weather', source_tag: 'v1', repo_name: 'weather-vm', tag_name: 'v1' },
    });
    expect(res.status).toBe(201);
    const { vm_id: vmId, commit_id: commitId } = await res.json();
    const { context, page } = await visit(bob);
    await page.goto('/ui/vms');
    const row = page.locator('table.vms tbody tr');
    expect(await row.count()).toBe(1);
    expect(await row.locator('th code').getAttribute('title')).toBe(vmId);
    expect(await row.locator('.badge').textContent()).toBe('sleeping');
    expect(await row.locator('td code').getAttribute('title')).toBe(commitId);
    expect(await row.getByRole('link', { name: 'bob/weather-vm', exact: true }).count()).toBe(1);

    // A VM that never ran (a dataset fork's, sleeping) commits its commit's tree, as the notice says.
    await row.getByRole('button', { name: /^Commit VM/ }).click();
    await expect.poll(() => page.locator('.notice').textContent()).toMatch(/^VM committed as commit [0-9a-f-]{36}\.$/);
    expect(await heading(page)).toBe('Your VMs');

    page.once('dialog', (dialog) => void dialog.accept());
    await row.getByRole('button', { name: /^Delete VM/ }).click();
    await expect.poll(() => page.locator('.notice').textContent()).toBe(`VM ${vmId.replace(/-/g, '').slice(-8)} deleted.`);
    expect(await page.locator('table.vms').count()).toBe(0);
    expect(await page.locator('.empty').textContent()).toContain('No VMs');
    await context.close();
  });

  it('fits a 375px phone and a 1280px laptop, with a label for every field', async () => {
    const context = await browser.newContext({ baseURL: s.url });
    const page = await context.newPage();
    await page.goto('/ui/sign-in');
    await page.getByLabel('Your token').fill(bob);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.locator('.who').textContent()).toContain('bob');
    for (const width of [375, 1280]) {
      await page.setViewportSize({ width, height: 800 });
      for (const path of ['/ui/', '/ui/repos/alice/weather', '/ui/repos/alice/weather/network', '/ui/repos/alice/weather/tags/v2/tree', '/ui/repos/bob/weather-bob/storage', '/ui/vms', '/ui/storage']) {
        await page.goto(path);
        const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
        expect(overflow, `${path} at ${width}px`).toBeLessThanOrEqual(0);
        const unlabelled = await page.evaluate<string[]>(
          "[...document.querySelectorAll('input:not([type=hidden]), select, textarea')].filter((e) => e.labels.length === 0).map((e) => e.outerHTML)",
        );
        expect(unlabelled, path).toEqual([]);
      }
    }
    // Keyboard: the skip link is the first stop and leads to the content.
    await page.goto('/ui/');
    await page.keyboard.press('Tab');
    expect(await page.evaluate<string>('document.activeElement.textContent')).toBe('Skip to content');
    await context.close();
  });
});
