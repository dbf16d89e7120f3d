/** How figures read on the pages: sizes, ratios, dates and ids. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** `1536` -> `1.50 KiB`, `204800` -> `200 KiB`; exact below 1 KiB. */
export function bytes(n: number): string {
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(value < 10 ? 2 : 1).replace(/\.0+$/, '')} ${UNITS[unit]}`;
}

export const ratio = (r: number | null): string => (r === null ? 'n/a (nothing stored)' : `${r.toFixed(2)}×`);

/** An ISO 8601 time as `2024-05-01 12:34 UTC`. */
export const when = (iso: string): string => `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;

/**
 * 8 hex digits of a UUID, enough to tell commits and VMs apart on a page: the last ones, since
 * a UUID v7 (commits) starts with its time, which commits made together share.
 */
export const shortId = (id: string): string => id.replace(/-/g, '').slice(-8);

export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
