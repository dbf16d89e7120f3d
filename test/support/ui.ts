/**
 * Driving the web UI over plain HTTP, as a browser would: its session cookie, the CSRF token of
 * its forms, and form posts. For the tests that need no browser.
 */
import { expect } from 'vitest';
import type { TestServer } from './server.js';

export interface UiClient {
  /** The Cookie header the browser would send: the session cookie, once one is set. */
  cookie: string;
  /** The session's CSRF token, as its forms carry it. */
  csrf: string;
  get(path: string): Promise<Response>;
  /** A form POST (no redirect followed); `csrf` is added unless `fields` sets it (`null`: left out). */
  post(path: string, fields?: Record<string, string | null>): Promise<Response>;
}

/** The `name=value` of a Set-Cookie header. */
export const cookiePair = (setCookie: string | null): string => (setCookie ?? '').split(';')[0]!;

/** The value of the CSRF field of the first form of an HTML page. */
export function csrfOf(html: string): string {
  const match = /name="csrf" value="([^"]*)"/.exec(html);
  expect(match, 'a form with a CSRF field').not.toBeNull();
  return match![1]!;
}

/** A visitor's session (from the sign-in page), signed in with `token` when given. */
export async function uiClient(s: TestServer, token?: string): Promise<UiClient> {
  const client: UiClient = {
    cookie: '',
    csrf: '',
    get: (path) => fetch(s.url + path, { headers: { cookie: client.cookie }, redirect: 'manual' }),
    post: (path, fields = {}) => {
      const form = new URLSearchParams();
      const all = { csrf: client.csrf, ...fields };
      for (const [name, value] of Object.entries(all)) if (value !== null) form.set(name, value);
      return fetch(s.url + path, {
        method: 'POST',
        headers: { cookie: client.cookie, 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
        redirect: 'manual',
      });
    },
  };
  const signInPage = await client.get('/ui/sign-in');
  expect(signInPage.status).toBe(200);
  client.cookie = cookiePair(signInPage.headers.get('set-cookie'));
  client.csrf = csrfOf(await signInPage.text());
  if (token === undefined) return client;
  const signedIn = await client.post('/ui/sign-in', { token });
  expect(signedIn.status).toBe(303);
  client.cookie = cookiePair(signedIn.headers.get('set-cookie'));
  client.csrf = csrfOf(await (await client.get('/ui/')).text());
  return client;
}
