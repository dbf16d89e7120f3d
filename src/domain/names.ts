import { invalid } from './errors.js';
import { VISIBILITY_RANK, type Visibility } from './model.js';

// Names appear in URL paths and in `repo:tag` references, so they exclude `/`, `:` and spaces.
const NAMESPACE_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,38})$/;
const REPOSITORY_NAME = /^[A-Za-z0-9_.-]{1,100}$/;
/** As Vers: 1-64 of letters, digits, `-`, `_`, `.`. */
const TAG_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export const isNamespaceName = (name: string): boolean => NAMESPACE_NAME.test(name);

export function assertNamespaceName(name: string): string {
  if (!isNamespaceName(name)) {
    throw invalid(`invalid name "${name}": 1-39 letters, digits, "-", "_" or ".", starting with a letter or digit`);
  }
  return name;
}

export function assertRepositoryName(name: string): string {
  if (!REPOSITORY_NAME.test(name) || name === '.' || name === '..' || name.endsWith('.git')) {
    throw invalid(`invalid repository name "${name}": 1-100 letters, digits, "-", "_" or "."`);
  }
  return name;
}

export function assertTagName(name: string): string {
  if (!TAG_NAME.test(name)) {
    throw invalid(`invalid tag name "${name}": 1-64 letters, digits, "-", "_" or "."`);
  }
  return name;
}

export function isVisibility(v: unknown): v is Visibility {
  return typeof v === 'string' && v in VISIBILITY_RANK;
}

/** The `repo_name:tag_name` reference that Vers answers with. */
export const reference = (repoName: string, tagName: string) => `${repoName}:${tagName}`;
