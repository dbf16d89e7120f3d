/**
 * The guest agent client's resynchronisation, against a scripted agent on a Unix socket: the
 * paths a real guest rarely takes on cue (an answer that comes after its command timed out, a
 * stray byte sequence before the delimiter) but that must not hand one command another's answer.
 */
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { QgaClient } from '../../src/runtime/qemu/qga-client.js';
import { tempDir } from '../support/trees.js';

interface Agent {
  client: QgaClient;
  /** Commands the agent received, in order (0xFF resets dropped). */
  received: { execute: string; arguments?: Record<string, unknown> }[];
}

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

/**
 * An agent that answers like qemu-ga, except that it answers a command named in `late` only
 * when the next command comes in, just before answering that one: as a slow guest would.
 */
async function scriptedAgent(late: string[], answers: Record<string, unknown> = {}): Promise<Agent> {
  const dir = await tempDir('snapfork-qga-');
  const path = join(dir, 'qga.sock');
  const received: Agent['received'] = [];
  let held: (() => void)[] = [];
  const server: Server = createServer((socket: Socket) => {
    let buffer = '';
    socket.on('data', (data: Buffer) => {
      buffer += data.toString('latin1');
      for (let newline = buffer.indexOf('\n'); newline !== -1; newline = buffer.indexOf('\n')) {
        const line = buffer.slice(0, newline).replaceAll('\xff', '');
        buffer = buffer.slice(newline + 1);
        const command = JSON.parse(line) as Agent['received'][number];
        received.push(command);
        const answer = () => {
          if (command.execute === 'guest-sync-delimited') socket.write(Buffer.from(`\xff${JSON.stringify({ return: command.arguments!.id })}\n`, 'latin1'));
          else socket.write(JSON.stringify({ return: answers[command.execute] ?? {} }) + '\n');
        };
        for (const lateAnswer of held) lateAnswer();
        held = [];
        if (late.includes(command.execute)) held.push(answer);
        else answer();
      }
    });
  });
  server.listen(path);
  await once(server, 'listening');
  const socket = connect(path);
  await once(socket, 'connect');
  const client = new QgaClient(socket, 100);
  cleanup = async () => {
    client.close();
    server.close();
    await rm(dir, { recursive: true, force: true });
  };
  return { client, received };
}

describe('QgaClient', () => {
  it('syncs before its first command', async () => {
    const agent = await scriptedAgent([]);
    await agent.client.waitReady(Date.now() + 5_000, () => false);
    expect(agent.received.map((c) => c.execute)).toEqual(['guest-sync-delimited', 'guest-ping']);
  });

  it('skips the late answer of a timed-out command and gives the next command its own', async () => {
    const agent = await scriptedAgent(['guest-info'], { 'guest-get-host-name': { 'host-name': 'mine' } });
    await agent.client.waitReady(Date.now() + 5_000, () => false);
    await expect(agent.client.command('guest-info')).rejects.toThrow(/did not answer guest-info/);
    // guest-info's answer ({}) now comes just before the answer to whatever is sent next.
    await expect(agent.client.command('guest-get-host-name')).resolves.toEqual({ 'host-name': 'mine' });
    const order = agent.received.map((c) => c.execute);
    expect(order.slice(-2)).toEqual(['guest-sync-delimited', 'guest-get-host-name']);
  });
});
