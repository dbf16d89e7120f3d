/** Directory trees and tars for tests: build one, tar it, untar it, compare two. */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';

export const tempDir = (prefix = 'snapfork-tree-') => mkdtemp(join(tmpdir(), prefix));

/** Regular, empty and multi-chunk files, an empty directory, a symlink, modes, spaces and UTF-8. */
export async function makeSampleTree(): Promise<string> {
  const dir = await tempDir();
  await writeFile(join(dir, 'hello.txt'), 'hello, snapfork\n');
  await writeFile(join(dir, 'empty'), '');
  await mkdir(join(dir, 'nested/deeper'), { recursive: true });
  await writeFile(join(dir, 'nested/deeper/random.bin'), randomBytes(3 * 1024 * 1024 + 17));
  await writeFile(join(dir, 'nested/données é.txt'), 'unicode ✓\n');
  await writeFile(join(dir, 'with spaces.txt'), 'spaces\n');
  await writeFile(join(dir, 'run.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(dir, 'run.sh'), 0o755);
  await mkdir(join(dir, 'empty-dir'));
  await symlink('nested/deeper/random.bin', join(dir, 'link-to-random'));
  return dir;
}

export async function tarOf(dir: string): Promise<Buffer> {
  const entries = await readdir(dir);
  const parts: Buffer[] = [];
  for await (const part of tar.create({ cwd: dir, portable: true }, entries) as unknown as AsyncIterable<Buffer>) {
    parts.push(part);
  }
  return Buffer.concat(parts);
}

/** One entry of tarOfEntries: any header node-tar can encode, `body` its bytes (files only). */
export interface RawTarEntry {
  path: string;
  type?: tar.types.EntryTypeName;
  linkpath?: string;
  body?: Buffer | string;
  /** The size the header claims; the body's length unless set. */
  size?: number;
}

/**
 * A tar of exactly these headers, written as given: no path is cleaned, so a test can send what
 * a hostile client would (`..`, absolute paths, links out of the tree, devices, duplicates).
 */
export function tarOfEntries(entries: RawTarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const { path, type = 'File', linkpath, body = '', size } of entries) {
    const bytes = Buffer.from(body);
    const header = Buffer.alloc(512);
    new tar.Header({ path, type, linkpath, mode: 0o644, uid: 0, gid: 0, mtime: new Date(0), size: size ?? bytes.length }).encode(header, 0);
    blocks.push(header, bytes, Buffer.alloc((512 - (bytes.length % 512)) % 512));
  }
  return Buffer.concat([...blocks, Buffer.alloc(1024)]);
}

export async function untar(body: Readable | Buffer, dir: string): Promise<void> {
  await pipeline(body instanceof Buffer ? Readable.from([body]) : body, tar.x({ cwd: dir, strict: true }));
}

/** Every path with its type, mode, size and content (or link target), sorted by path. */
export async function describeTree(root: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const st = await lstat(join(root, path));
      const mode = (st.mode & 0o777).toString(8);
      if (st.isSymbolicLink()) out.push(`${path} symlink -> ${await readlink(join(root, path))}`);
      else if (st.isDirectory()) {
        out.push(`${path} dir ${mode}`);
        await walk(path);
      } else {
        const digest = createHash('sha256').update(await readFile(join(root, path))).digest('hex');
        out.push(`${path} file ${mode} ${st.size} ${digest}`);
      }
    }
  }
  await walk('');
  return out;
}
