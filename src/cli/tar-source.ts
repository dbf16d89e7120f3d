/**
 * A tar file as a push source without unpacking it: walks the archive's headers (ustar, PAX
 * extended headers and GNU long names, through node-tar's Header and Pax) and records where each
 * file's bytes lie inside the tar, so that its chunks are cut and read back in place.
 */
import { open } from 'node:fs/promises';
import { Header, Pax, type HeaderData } from 'tar';
import { PERMISSION_BITS } from '../domain/model.js';
import { normalizeEntryPath } from '../domain/tar-codec.js';
import { CliError } from './errors.js';
import type { LocalEntry } from './local-tree.js';

const BLOCK = 512;
const padded = (size: number) => Math.ceil(size / BLOCK) * BLOCK;

const ENTRY_TYPES: Record<string, LocalEntry['type'] | undefined> = {
  File: 'file',
  OldFile: 'file',
  ContiguousFile: 'file',
  Directory: 'dir',
  SymbolicLink: 'symlink',
};

/**
 * The entries of the tar at `path`, in archive order; a later entry for the same path replaces
 * an earlier one, as extraction does. Hard links become copies of their target's entry;
 * devices and FIFOs are skipped with a warning, as a directory push skips them.
 */
export async function scanTar(path: string, warn: (message: string) => void): Promise<LocalEntry[]> {
  const fh = await open(path, 'r');
  const entries = new Map<string, LocalEntry>();
  const block = Buffer.alloc(BLOCK);
  const readAt = async (buffer: Buffer, position: number) => {
    const { bytesRead } = await fh.read(buffer, 0, buffer.length, position);
    if (bytesRead < buffer.length) throw new CliError(`${path}: truncated tar archive`);
  };
  try {
    let extended: HeaderData | undefined;
    let global: HeaderData | undefined;
    for (let at = 0; ; ) {
      await readAt(block, at);
      if (block.every((b) => b === 0)) break; // end-of-archive marker
      const header = new Header(block, 0, extended, global);
      if (!header.cksumValid) throw new CliError(`${path}: not a tar archive (bad header checksum at byte ${at})`);
      const size = header.size ?? 0;
      const dataOffset = at + BLOCK;
      at = dataOffset + padded(size);
      const meta = async () => {
        const body = Buffer.alloc(size);
        await readAt(body, dataOffset);
        return body.toString('utf8');
      };
      switch (header.type) {
        case 'ExtendedHeader':
          extended = Pax.parse(await meta(), extended, false);
          continue;
        case 'GlobalExtendedHeader':
          global = Pax.parse(await meta(), global, true);
          continue;
        case 'NextFileHasLongPath':
        case 'OldGnuLongPath':
          extended = { ...extended, path: (await meta()).replace(/\0.*$/s, '') };
          continue;
        case 'NextFileHasLongLinkpath':
          extended = { ...extended, linkpath: (await meta()).replace(/\0.*$/s, '') };
          continue;
      }
      extended = undefined;
      const entryPath = normalizeEntryPath(header.path ?? '');
      if (entryPath === '') continue;
      const base = { path: entryPath, abs: path, mode: (header.mode ?? 0o644) & PERMISSION_BITS, mtime: Math.floor((header.mtime?.getTime() ?? 0) / 1000) };
      const type = ENTRY_TYPES[header.type];
      if (type === 'file') entries.set(entryPath, { ...base, type, size, linkTarget: null, dataOffset });
      else if (type) entries.set(entryPath, { ...base, type, size: 0, linkTarget: type === 'symlink' ? (header.linkpath ?? '') : null });
      else if (header.type === 'Link') {
        const target = entries.get(normalizeEntryPath(header.linkpath ?? ''));
        if (target?.type !== 'file') throw new CliError(`${path}: hard link ${entryPath} to a missing file`);
        entries.set(entryPath, { ...target, path: entryPath, mode: base.mode, mtime: base.mtime });
      } else warn(`${path}: ${entryPath} skipped (${header.type} entries are not stored)`);
    }
  } finally {
    await fh.close();
  }
  return [...entries.values()];
}
