/**
 * The reference semantics of filters, in plain JavaScript over metadata objects: what a filter
 * means (docs/records.md, "Filter program", and src/records/filter.ts), written without the
 * compiler, the terms or the program format, so that a property test can hold the native
 * evaluation against it. It assumes a valid filter (parseFilter rejects the others) over
 * records whose indexed fields have their declared types (add rejects the others).
 *
 * A field's values: none when the field is missing, the elements of an array, else the one
 * value. `$eq`/`$in`/ranges: some value matches (false without values); `$ne`/`$nin`: the
 * negation of `$eq`/`$in` (true without values); `$exists`: whether there is a value.
 */
import type { FieldCondition, Filter, Id } from "./filter.ts";

/** A record as the reference sees it: its id (as added) and its metadata. */
export interface ReferenceRecord {
  id: Id;
  metadata?: Record<string, unknown>;
}

function valuesOf(metadata: Record<string, unknown> | undefined, field: string): unknown[] {
  if (metadata === undefined || !Object.hasOwn(metadata, field)) return [];
  const value = metadata[field];
  return Array.isArray(value) ? value : [value];
}

/** -0 and 0 are one number, as everywhere in JSON. */
const same = (a: unknown, b: unknown): boolean => a === b;

function sameId(a: Id, b: Id): boolean {
  if (typeof a === "string" || typeof b === "string") return a === b;
  return BigInt(a) === BigInt(b);
}

/** Whether `record` passes `filter`. O(size of the filter x values of its fields). */
export function matches(filter: Filter, record: ReferenceRecord): boolean {
  for (const [key, value] of Object.entries(filter)) {
    let holds: boolean;
    if (key === "$and") holds = (value as Filter[]).every((f) => matches(f, record));
    else if (key === "$or") holds = (value as Filter[]).some((f) => matches(f, record));
    else if (key === "$not") holds = !matches(value as Filter, record);
    else if (key === "allow") holds = Array.from(value as ArrayLike<Id>).some((id) => sameId(id, record.id));
    else holds = holdsFor(valuesOf(record.metadata, key), value as FieldCondition);
    if (!holds) return false;
  }
  return true;
}

function holdsFor(values: unknown[], condition: FieldCondition): boolean {
  if (typeof condition !== "object") return values.some((v) => same(v, condition));
  for (const [op, operand] of Object.entries(condition)) {
    let holds: boolean;
    switch (op) {
      case "$eq":
        holds = values.some((v) => same(v, operand));
        break;
      case "$ne":
        holds = !values.some((v) => same(v, operand));
        break;
      case "$in":
        holds = values.some((v) => (operand as unknown[]).some((o) => same(v, o)));
        break;
      case "$nin":
        holds = !values.some((v) => (operand as unknown[]).some((o) => same(v, o)));
        break;
      case "$gt":
        holds = values.some((v) => (v as number) > (operand as number));
        break;
      case "$gte":
        holds = values.some((v) => (v as number) >= (operand as number));
        break;
      case "$lt":
        holds = values.some((v) => (v as number) < (operand as number));
        break;
      case "$lte":
        holds = values.some((v) => (v as number) <= (operand as number));
        break;
      case "$exists":
        holds = (values.length > 0) === operand;
        break;
      case "$not":
        holds = !holdsFor(values, operand as FieldCondition);
        break;
      default:
        throw new Error(`reference: unknown operator ${op} (the filter was not validated)`);
    }
    if (!holds) return false;
  }
  return true;
}
