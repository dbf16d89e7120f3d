/**
 * fsck: checks that the store holds everything its metadata refers to, and with `readData` that
 * the stored bytes still hash to their digests. Read-only; safe beside a running server.
 *
 * Memory stays bounded whatever the store holds: commits and manifest entries are read in pages
 * by key, chunk references are looked up a page at a time (one index call per page, each digest
 * once per page however many files share it), and reading data walks the chunk store's own list
 * once, so a chunk shared by a thousand manifests is read once. Problem lists are capped.
 */
import { invalid } from './errors.js';
import type { Principal } from './principal.js';
import type { AccessPolicy } from './access-policy.js';
import type { Telemetry } from './ports/telemetry.js';
import type { ChunkStore, IntegrityStore, ManifestEntryKey, MetadataStore } from '../store/types.js';

/** Commits per page: each page is three statements whatever its parents. */
const COMMIT_PAGE = 500;
/** File entries per page; their chunk lists go to the chunk index in one call per REFERENCE_BATCH digests. */
const ENTRY_PAGE = 256;
const REFERENCE_BATCH = 4096;
/** Stored chunks' sizes remembered across pages of references: ~15 MiB at most. */
const KNOWN_CHUNKS = 100_000;
/** Chunks handed to ChunkStore.verify at once (it reads a few at a time). */
const VERIFY_BATCH = 256;
/** Problems of each list the report names; the totals count them all. */
export const PROBLEMS_LISTED = 1000;

export interface FsckOptions {
  /** Read every stored chunk back and check it against its digest. */
  readData?: boolean;
  /**
   * Read only a deterministic part of the stored chunks (implies reading): `n/m` (the n-th of m
   * parts, 1 <= n <= m: m runs with n = 1..m together read everything once) or `p%` (about p
   * percent of them, the same ones each time). As restic's --read-data-subset.
   */
  readDataSubset?: string;
}

/** Something the metadata refers to that the store does not hold. */
export type MissingProblem =
  | { kind: 'manifest'; commit: string; manifest: string }
  | { kind: 'parent'; commit: string; parent: string }
  | { kind: 'chunk'; digest: string; manifest: string; path: string };

/** Something the store holds that is not what the metadata says. */
export type CorruptProblem =
  /** Its bytes fail their check (read_data only). */
  | { kind: 'chunk'; digest: string; pack?: string; reason: string }
  /** A manifest lists the chunk with another size than the stored chunk has. */
  | { kind: 'size_mismatch'; digest: string; manifest: string; path: string; expectedSize: number; actualSize: number };

export interface FsckReport {
  ok: boolean;
  /** What was read back: nothing, every stored chunk, or the part `readDataSubset` names. */
  readData: 'none' | 'all' | 'subset';
  readDataSubset: string | null;
  commitsChecked: number;
  manifestsChecked: number;
  /** Chunk references of manifests' files looked up in the chunk store (sizes compared). */
  referencesChecked: number;
  /** Stored chunks read back and hashed: 0 without readData. */
  chunksChecked: number;
  /** The first PROBLEMS_LISTED of each kind of problem; `*Total` counts all of them. */
  missing: MissingProblem[];
  missingTotal: number;
  corrupt: CorruptProblem[];
  corruptTotal: number;
  seconds: number;
}

/** A list that keeps its first `cap` items and counts them all. */
class CappedList<T> {
  readonly items: T[] = [];
  total = 0;
  constructor(private readonly cap: number) {}
  add(item: T): void {
    this.total++;
    if (this.items.length < this.cap) this.items.push(item);
  }
}

/** Which stored chunks a read of `subset` covers; `invalid` when it is neither `n/m` nor `p%`. */
export function subsetFilter(subset: string): (digest: string) => boolean {
  // The first 32 bits of a SHA-256 are uniform: a stable, even split with no hashing of our own.
  const bucket = (digest: string) => parseInt(digest.slice(0, 8), 16);
  const part = /^(\d{1,9})\/(\d{1,9})$/.exec(subset);
  if (part) {
    const [n, m] = [Number(part[1]), Number(part[2])];
    if (n < 1 || n > m) throw invalid(`read_data_subset "${subset}": n/m needs 1 <= n <= m`);
    return (digest) => bucket(digest) % m === n - 1;
  }
  const percent = /^(\d{1,3}(?:\.\d{1,6})?)%$/.exec(subset);
  if (percent) {
    const p = Number(percent[1]);
    if (p <= 0 || p > 100) throw invalid(`read_data_subset "${subset}": a percentage needs 0 < p <= 100`);
    const below = (p / 100) * 2 ** 32;
    return (digest) => bucket(digest) < below;
  }
  throw invalid(`read_data_subset "${subset}": expected n/m (e.g. 1/10) or a percentage (e.g. 10%)`);
}

export class FsckService {
  constructor(
    private readonly store: IntegrityStore & Pick<MetadataStore, 'transaction'>,
    private readonly chunks: Pick<ChunkStore, 'statMany' | 'verify' | 'list'>,
    private readonly policy: AccessPolicy,
    private readonly telemetry: Telemetry,
    private readonly now: () => string,
  ) {}

  /**
   * Runs every check and reports what it found. Site administrators only: `unauthorized`
   * without a user, `forbidden` without the admin scope; `invalid` for a malformed subset.
   */
  async run(principal: Principal, options: FsckOptions = {}): Promise<FsckReport> {
    return this.begin(principal, options)();
  }

  /** Checks the caller and the options at once (throwing as run does), and answers the check to run. */
  begin(principal: Principal, options: FsckOptions = {}): () => Promise<FsckReport> {
    this.policy.requireScope(principal, 'admin');
    const select = options.readDataSubset === undefined ? undefined : subsetFilter(options.readDataSubset);
    return () => this.check(options, select);
  }

  private async check(options: FsckOptions, select: ((digest: string) => boolean) | undefined): Promise<FsckReport> {
    const started = Date.parse(this.now());
    const missing = new CappedList<MissingProblem>(PROBLEMS_LISTED);
    const corrupt = new CappedList<CorruptProblem>(PROBLEMS_LISTED);
    const commitsChecked = await this.checkCommits(missing);
    const manifestsChecked = await this.store.countManifests();
    const referencesChecked = await this.checkReferences(missing, corrupt);
    await this.dropCollected(missing);
    const reading = options.readData === true || select !== undefined;
    const chunksChecked = reading ? await this.readChunks(select ?? (() => true), corrupt) : 0;
    this.telemetry.fsckFinished({ missing: missing.total, corrupt: corrupt.total });
    return {
      ok: missing.total === 0 && corrupt.total === 0,
      readData: !reading ? 'none' : select === undefined ? 'all' : 'subset',
      readDataSubset: options.readDataSubset ?? null,
      commitsChecked,
      manifestsChecked,
      referencesChecked,
      chunksChecked,
      missing: missing.items,
      missingTotal: missing.total,
      corrupt: corrupt.items,
      corruptTotal: corrupt.total,
      seconds: (Date.parse(this.now()) - started) / 1000,
    };
  }

  /** Every commit's manifest and parents exist. Answers how many commits were checked. */
  private async checkCommits(missing: CappedList<MissingProblem>): Promise<number> {
    let checked = 0;
    for (let after = ''; ; ) {
      const page = await this.store.listCommitsAfter(after, COMMIT_PAGE);
      const last = page.at(-1);
      if (!last) return checked;
      const manifests = new Set(await this.store.missingManifests(page.map((c) => c.manifestDigest)));
      const parents = new Set(await this.store.missingCommits(page.flatMap((c) => c.parentIds)));
      for (const commit of page) {
        if (manifests.has(commit.manifestDigest)) missing.add({ kind: 'manifest', commit: commit.id, manifest: commit.manifestDigest });
        for (const parent of commit.parentIds) if (parents.has(parent)) missing.add({ kind: 'parent', commit: commit.id, parent });
      }
      checked += page.length;
      after = last.id;
    }
  }

  /**
   * Every chunk a manifest's file lists is stored, with the size listed. Answers how many
   * references were checked.
   */
  private async checkReferences(missing: CappedList<MissingProblem>, corrupt: CappedList<CorruptProblem>): Promise<number> {
    let checked = 0;
    // Sizes of chunks found stored, kept across pages: manifests of forks and of a tag's
    // successive commits share most of their chunks, which are then looked up about once.
    // Emptied when full, so memory stays bounded.
    const known = new Map<string, number>();
    for (let after: ManifestEntryKey | null = null; ; ) {
      const page = await this.store.listFileChunksAfter(after, ENTRY_PAGE);
      const last = page.at(-1);
      if (!last) return checked;
      const sizes = new Map<string, number>();
      const asking = new Set<string>();
      for (const { digest } of page.flatMap((file) => file.chunks)) {
        const size = known.get(digest);
        if (size !== undefined) sizes.set(digest, size);
        else asking.add(digest);
      }
      const ask = [...asking];
      for (let start = 0; start < ask.length; start += REFERENCE_BATCH) {
        for (const [digest, { size }] of await this.chunks.statMany(ask.slice(start, start + REFERENCE_BATCH))) {
          sizes.set(digest, size);
          if (known.size >= KNOWN_CHUNKS) known.clear();
          known.set(digest, size);
        }
      }
      for (const { manifestDigest: manifest, path, chunks } of page) {
        for (const { digest, size } of chunks) {
          const stored = sizes.get(digest);
          if (stored === undefined) missing.add({ kind: 'chunk', digest, manifest, path });
          else if (stored !== size) corrupt.add({ kind: 'size_mismatch', digest, manifest, path, expectedSize: size, actualSize: stored });
        }
        checked += chunks.length;
      }
      after = last;
    }
  }

  /**
   * Drops the problems listed that a garbage collection made while the pass ran: it deletes
   * unreachable commits and manifests with their chunks in one exclusive transaction, so a
   * problem whose commit or manifest is gone, looked at in a transaction of the same kind, was
   * no problem. (Problems past the listed ones are counted as found.)
   */
  private async dropCollected(missing: CappedList<MissingProblem>): Promise<void> {
    if (missing.items.length === 0) return;
    const [goneCommits, goneManifests] = await this.store.transaction(
      async (tx) => {
        const commits = missing.items.flatMap((p) => (p.kind === 'chunk' ? [] : [p.commit]));
        const manifests = missing.items.flatMap((p) => (p.kind === 'chunk' ? [p.manifest] : []));
        return [new Set(await tx.missingCommits(commits)), new Set(await tx.missingManifests(manifests))] as const;
      },
      { exclusive: true },
    );
    const kept = missing.items.filter((p) => !(p.kind === 'chunk' ? goneManifests.has(p.manifest) : goneCommits.has(p.commit)));
    missing.total -= missing.items.length - kept.length;
    missing.items.splice(0, missing.items.length, ...kept);
  }

  /** Reads back every stored chunk `select` picks. Answers how many were read. */
  private async readChunks(select: (digest: string) => boolean, corrupt: CappedList<CorruptProblem>): Promise<number> {
    let read = 0;
    let batch: string[] = [];
    const verify = async () => {
      for (const damage of await this.chunks.verify(batch)) corrupt.add({ kind: 'chunk', ...damage });
      read += batch.length;
      batch = [];
    };
    for await (const digest of this.chunks.list()) {
      if (!select(digest)) continue;
      batch.push(digest);
      if (batch.length === VERIFY_BATCH) await verify();
    }
    await verify();
    return read;
  }
}
