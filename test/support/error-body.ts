import { expect } from 'vitest';
import type { ApiResponse } from './server.js';

/**
 * The JSON body of an error answer, less the `request_id` that every dialect's error carries,
 * once that is checked to be the answer's `X-Request-Id`: a test then compares the envelope.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function errorBodyOf(res: ApiResponse): Promise<any> {
  const { request_id: requestId, ...envelope } = await res.json();
  expect(requestId).toBe(res.headers.get('x-request-id'));
  return envelope;
}
