import { UsageError } from './errors.js';

export interface RepoPath {
  owner: string;
  repo: string;
}

export interface Reference extends RepoPath {
  tag: string;
}

/** A tag of a repository in the namespace the token acts in, as Vers names it (`repo:tag`). */
export interface ActingReference {
  repo: string;
  tag: string;
}

const NAME = '[^/:\\s]+';
const TAG = '[A-Za-z0-9._-]{1,64}';
const REPO_PATH = new RegExp(`^(${NAME})/(${NAME})$`);
const REFERENCE = new RegExp(`^(${NAME})/(${NAME}):(${TAG})$`);
const ACTING_REFERENCE = new RegExp(`^(${NAME}):(${TAG})$`);
const TAG_RULE = '(tag: 1-64 letters, digits, "-", "_", ".")';

/** Parses `owner/repo:tag`; the tag is 1-64 letters, digits, `-`, `_` or `.`. */
export function parseReference(text: string): Reference {
  const m = REFERENCE.exec(text);
  if (!m) {
    throw new UsageError(`bad reference "${text}": expected owner/repo:tag ${TAG_RULE}`);
  }
  return { owner: m[1] as string, repo: m[2] as string, tag: m[3] as string };
}

/** Parses `repo:tag` (no owner: the Vers calls act in the token's namespace). */
export function parseActingReference(text: string): ActingReference {
  const m = ACTING_REFERENCE.exec(text);
  if (!m) throw new UsageError(`bad reference "${text}": expected repo:tag ${TAG_RULE}`);
  return { repo: m[1] as string, tag: m[2] as string };
}

/** Parses `owner/repo`. */
export function parseRepoPath(text: string): RepoPath {
  const m = REPO_PATH.exec(text);
  if (!m) throw new UsageError(`bad repository "${text}": expected owner/repo`);
  return { owner: m[1] as string, repo: m[2] as string };
}

export const formatReference = (r: Reference): string => `${r.owner}/${r.repo}:${r.tag}`;
