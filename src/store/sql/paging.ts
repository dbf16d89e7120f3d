/** Paging over any Kysely select of the metadata tables, shared by the aggregate modules. */
import type { SelectQueryBuilder } from 'kysely';
import type { Page, PageOf } from '../../domain/model.js';
import type { Database } from './schema.js';

/** One page of an ordered query, mapped by `map`, and the number of rows the query matches. */
export async function pageOf<TB extends keyof Database, O, T>(
  query: SelectQueryBuilder<Database, TB, O>,
  page: Page,
  map: (row: O) => T,
): Promise<PageOf<T>> {
  const rows = await query.limit(page.limit).offset(page.offset).execute();
  return { items: rows.map(map), total: await countOf(query) };
}

/** How many rows `query` matches. */
export async function countOf<TB extends keyof Database, O>(query: SelectQueryBuilder<Database, TB, O>): Promise<number> {
  const { total } = await query
    .clearSelect()
    .clearOrderBy()
    .select((eb) => eb.fn.countAll<number>().as('total'))
    .executeTakeFirstOrThrow();
  return total;
}
