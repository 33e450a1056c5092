/**
 * The filter language (README, "Filters") and its compilation into a filter program, the
 * postfix byte code of docs/records.md that the native core evaluates into a bitset of slots.
 * Pure: string ids of an allow-list are hashed by the function the caller passes (natively,
 * `qv_hash_ids`, in the Index).
 *
 *   { lang: "en" }                                  $eq, implicit
 *   { year: { $gte: 2020, $lt: 2024 } }             several operators: all must hold
 *   { tags: { $in: ["a", "b"] } }                   any value of the field in the set
 *   { $or: [{ lang: "en" }, { lang: "de" }] }       $and, $or: non-empty arrays; $not: a filter
 *   { allow: ["doc-1", 7n] }                        the record's id is in the list
 *
 * Several keys in one object must all hold. A field must be declared in `indexes`; a field with
 * several values (an array) matches an operator when any of its values does; a missing field has
 * no values: `$eq`, `$in` and the ranges are false for it, `$ne` and `$nin` true.
 */
import { InvalidFilterError } from "../errors.ts";
import { ByteWriter, childPath, describe, type Field, type RecordSchema, utf8Length } from "./encode.ts";
import { recordLimits, recordVersions } from "./limits.ts";

/** An id: a u64 key (number or bigint) or a string id. */
export type Id = number | bigint | string;

/** The operators of one field. Several in one object must all hold. */
export interface FieldOperators {
  /** Any value of the field equals this (a string for a keyword field, a number for a number field). */
  $eq?: string | number;
  /** No value of the field equals this (true when the field is missing). */
  $ne?: string | number;
  /** Any value of the field is in the list (an empty list matches nothing). */
  $in?: readonly (string | number)[];
  /** No value of the field is in the list (true when the field is missing). */
  $nin?: readonly (string | number)[];
  /** Number fields: any value greater than this. */
  $gt?: number;
  /** Number fields: any value greater than or equal to this. */
  $gte?: number;
  /** Number fields: any value less than this. */
  $lt?: number;
  /** Number fields: any value less than or equal to this. */
  $lte?: number;
  /** The record has (true) or has not (false) a value of the field. */
  $exists?: boolean;
  /** The negation of a condition: `{ year: { $not: { $gt: 5 } } }`. */
  $not?: FieldCondition;
}

/** A field's condition: a value (implicit `$eq`) or an object of operators. */
export type FieldCondition = string | number | FieldOperators;

/** A filter over the indexed fields (see the module comment). */
export interface Filter {
  /** Every filter holds. */
  $and?: readonly Filter[];
  /** At least one filter holds. */
  $or?: readonly Filter[];
  /** The filter does not hold. */
  $not?: Filter;
  /** The record's id is one of these (numbers, bigints or string ids). */
  allow?: readonly Id[] | BigUint64Array;
  /** A condition on an indexed field. */
  [field: string]: FieldCondition | readonly Filter[] | Filter | readonly Id[] | BigUint64Array | undefined;
}

/** The comparison codes of NUM_CMP. */
export const cmpCodes = { eq: 1, lt: 2, lte: 3, gt: 4, gte: 5 } as const;
export type Cmp = keyof typeof cmpCodes;

/** The op codes of a filter program. */
export const opCodes = { all: 0x01, kw_in: 0x02, num_cmp: 0x03, num_in: 0x04, exists: 0x05, and: 0x06, or: 0x07, not: 0x08, allow: 0x09 } as const;

/** A parsed, validated filter: the ops of docs/records.md as a tree. */
export type FilterNode =
  | { op: "all" }
  | { op: "kw_in"; field: Field; values: string[] }
  | { op: "num_cmp"; field: Field; cmp: Cmp; value: number }
  | { op: "num_in"; field: Field; values: number[] }
  | { op: "exists"; field: Field }
  | { op: "and" | "or"; children: FilterNode[] }
  | { op: "not"; child: FilterNode }
  | { op: "allow"; keys: bigint[]; strings: string[] };

const none: FilterNode = { op: "not", child: { op: "all" } };
/** Nesting of the filter object deeper than this is refused (it bounds the parser's recursion). */
const nestingMax = 32;
/** AND/OR take at most this many operands each: wider ones become a tree (a shallower stack). */
const fanOut = 16;
const u16Max = 0xffff;
const maxU64 = (1n << 64n) - 1n;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function fail(detail: string, path: string): never {
  throw new InvalidFilterError(detail, path);
}

function conjunction(op: "and" | "or", children: FilterNode[]): FilterNode {
  return children.length === 1 ? children[0] : { op, children };
}

/**
 * Validates `filter` against `schema` and parses it into a tree. InvalidFilterError naming the
 * problem and its path (`filter.$and[1].year.$gt`). O(size of the filter).
 */
export function parseFilter(filter: unknown, schema: RecordSchema, path = "filter", depth = 0): FilterNode {
  if (!isPlainObject(filter)) fail(`${describe(filter)}: a filter is an object of conditions (e.g. { lang: "en" })`, path);
  if (depth > nestingMax) fail(`nested more than ${nestingMax} levels deep`, path);
  const children: FilterNode[] = [];
  for (const key of Object.keys(filter)) {
    const value = filter[key];
    const at = childPath(path, key);
    if (value === undefined) fail("undefined is not a condition (leave the key out)", at);
    if (key === "$and" || key === "$or") {
      if (!Array.isArray(value) || value.length === 0) fail(`${key} takes a non-empty array of filters, not ${describe(value)}`, at);
      children.push(conjunction(key === "$and" ? "and" : "or", value.map((f, i) => parseFilter(f, schema, childPath(at, i), depth + 1))));
    } else if (key === "$not") {
      children.push({ op: "not", child: parseFilter(value, schema, at, depth + 1) });
    } else if (key === "allow") {
      children.push(parseAllow(value, at));
    } else if (key.startsWith("$")) {
      fail(`unknown operator ${key} (at this level: $and, $or, $not, allow, or an indexed field)`, at);
    } else {
      const field = schema.field(key);
      if (field === undefined) {
        const declared = schema.fields.map((f) => f.name).join(", ");
        fail(`the field ${JSON.stringify(key)} is not declared in indexes (${declared ? `declared: ${declared}` : "the index declares none"}); only indexed fields can be filtered`, at);
      }
      children.push(parseCondition(field, value, at, depth + 1));
    }
  }
  return children.length === 0 ? { op: "all" } : conjunction("and", children);
}

const fieldOperators = ["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$not"];

function parseCondition(field: Field, condition: unknown, path: string, depth: number): FilterNode {
  if (depth > nestingMax) fail(`nested more than ${nestingMax} levels deep`, path);
  if (typeof condition === "string" || typeof condition === "number") return equal(field, condition, path);
  if (Array.isArray(condition)) fail("an array is not a condition (use { $in: [...] } for any of several values)", path);
  if (!isPlainObject(condition)) fail(`${describe(condition)} is not a condition on ${field.kind} field ${JSON.stringify(field.name)} (give a ${field.kind === "keyword" ? "string" : "number"} or an object of operators)`, path);
  const keys = Object.keys(condition);
  if (keys.length === 0) fail("an empty condition (give a value or at least one operator)", path);
  const children: FilterNode[] = [];
  for (const key of keys) {
    const value = condition[key];
    const at = childPath(path, key);
    if (value === undefined) fail("undefined is not an operand (leave the operator out)", at);
    switch (key) {
      case "$eq":
        children.push(equal(field, value, at));
        break;
      case "$ne":
        children.push({ op: "not", child: equal(field, value, at) });
        break;
      case "$in":
        children.push(member(field, value, at));
        break;
      case "$nin":
        children.push({ op: "not", child: member(field, value, at) });
        break;
      case "$gt":
      case "$gte":
      case "$lt":
      case "$lte":
        children.push(range(field, key.slice(1) as Cmp, value, at));
        break;
      case "$exists":
        if (typeof value !== "boolean") fail(`$exists takes true or false, not ${describe(value)}`, at);
        children.push(value ? { op: "exists", field } : { op: "not", child: { op: "exists", field } });
        break;
      case "$not":
        children.push({ op: "not", child: parseCondition(field, value, at, depth + 1) });
        break;
      default:
        fail(`unknown operator ${JSON.stringify(key)} (field operators: ${fieldOperators.join(", ")})`, at);
    }
  }
  return conjunction("and", children);
}

/** A value compared with `field`: a string of at most 256 bytes, or a finite number. */
function operand(field: Field, value: unknown, path: string): string | number {
  if (field.kind === "keyword") {
    if (typeof value !== "string") fail(`${describe(value)}: ${JSON.stringify(field.name)} is a keyword field, compared with strings`, path);
    if (!(value as unknown as { isWellFormed(): boolean }).isWellFormed()) fail("a string with a lone surrogate (it must be valid UTF-8)", path);
    if (utf8Length(value) > recordLimits.keywordBytesMax) fail(`a keyword of ${utf8Length(value)} bytes (indexed keywords have at most ${recordLimits.keywordBytesMax})`, path);
    return value;
  }
  if (typeof value !== "number" || !Number.isFinite(value)) {
    fail(`${describe(value)}: ${JSON.stringify(field.name)} is a number field, compared with finite numbers`, path);
  }
  return value === 0 ? 0 : value;
}

function equal(field: Field, value: unknown, path: string): FilterNode {
  const v = operand(field, value, path);
  return field.kind === "keyword" ? { op: "kw_in", field, values: [v as string] } : { op: "num_cmp", field, cmp: "eq", value: v as number };
}

function member(field: Field, list: unknown, path: string): FilterNode {
  if (!Array.isArray(list)) fail(`${describe(list)}: $in and $nin take an array of values`, path);
  // By index, not map(): map() skips the holes of a sparse array, which would then reach the
  // program as undefined (an empty keyword, a NaN).
  const unique = new Set<string | number>();
  for (let i = 0; i < list.length; i++) {
    if (!(i in list)) fail("a hole in the list (every element must be a value)", childPath(path, i));
    unique.add(operand(field, list[i], childPath(path, i)));
  }
  const values = [...unique];
  if (values.length === 0) return none;
  return field.kind === "keyword" ? { op: "kw_in", field, values: values as string[] } : { op: "num_in", field, values: values as number[] };
}

function range(field: Field, cmp: Cmp, value: unknown, path: string): FilterNode {
  if (field.kind !== "number") fail(`$${cmp} compares numbers: ${JSON.stringify(field.name)} is a keyword field`, path);
  return { op: "num_cmp", field, cmp, value: operand(field, value, path) as number };
}

function parseAllow(value: unknown, path: string): FilterNode {
  if (value instanceof BigUint64Array) return { op: "allow", keys: Array.from(value), strings: [] };
  if (!Array.isArray(value)) fail(`allow takes an array of ids (or a BigUint64Array of keys), not ${describe(value)}`, path);
  const keys: bigint[] = [];
  const strings: string[] = [];
  for (let i = 0; i < value.length; i++) {
    const id = value[i];
    const at = childPath(path, i);
    if (typeof id === "string") {
      const bytes = utf8Length(id);
      if (id.length === 0 || bytes > recordLimits.idBytesMax || !(id as unknown as { isWellFormed(): boolean }).isWellFormed()) {
        fail(`${describe(id)} is not a string id (1 to ${recordLimits.idBytesMax} bytes of valid UTF-8)`, at);
      }
      strings.push(id);
    } else if (typeof id === "number") {
      if (!Number.isSafeInteger(id) || id < 0) fail(`${id} is not an id (a non-negative safe integer; a bigint above 2^53)`, at);
      keys.push(BigInt(id));
    } else if (typeof id === "bigint") {
      if (id < 0n || id > maxU64) fail(`${id}n is outside [0, 2^64 - 1]`, at);
      keys.push(id);
    } else {
      fail(`${describe(id)} is not an id (a number, a bigint or a string)`, at);
    }
  }
  return { op: "allow", keys, strings };
}

// ---------------------------------------------------------------- compilation

/** A node with AND/OR of at most `fanOut` operands and value sets of at most 65535. */
function shape(node: FilterNode): FilterNode {
  switch (node.op) {
    case "and":
    case "or": {
      let children = node.children.map(shape);
      while (children.length > fanOut) {
        const grouped: FilterNode[] = [];
        for (let i = 0; i < children.length; i += fanOut) grouped.push(conjunction(node.op, children.slice(i, i + fanOut)));
        children = grouped;
      }
      return conjunction(node.op, children);
    }
    case "not":
      return { op: "not", child: shape(node.child) };
    case "kw_in":
    case "num_in": {
      if (node.values.length <= u16Max) return node;
      const parts: FilterNode[] = [];
      for (let i = 0; i < node.values.length; i += u16Max) parts.push({ ...node, values: node.values.slice(i, i + u16Max) } as FilterNode);
      return shape({ op: "or", children: parts });
    }
    default:
      return node;
  }
}

/** The stack depth `node` needs; AND/OR operands are ordered deepest first, which minimizes it. */
function depthOf(node: FilterNode, memo: Map<FilterNode, number>): number {
  const known = memo.get(node);
  if (known !== undefined) return known;
  let depth = 1;
  if (node.op === "not") depth = depthOf(node.child, memo);
  else if (node.op === "and" || node.op === "or") {
    node.children.sort((a, b) => depthOf(b, memo) - depthOf(a, memo));
    depth = Math.max(...node.children.map((c, i) => i + depthOf(c, memo)));
  }
  memo.set(node, depth);
  return depth;
}

/**
 * The filter program of a parsed filter (docs/records.md, "Filter program"). `hashIds` gives
 * the keys of the allow-lists' string ids (one call for all of them). InvalidFilterError when
 * the program passes the limits (4096 ops, a stack of 64, 8 MiB). O(size of the program).
 */
export function encodeFilter(node: FilterNode, hashIds: (ids: string[]) => BigUint64Array): Uint8Array {
  const shaped = shape(node);
  const depth = depthOf(shaped, new Map());
  if (depth > recordLimits.filterStackMax) {
    fail(`nested too deeply: its program needs a stack of ${depth} (at most ${recordLimits.filterStackMax})`, "filter");
  }
  const strings: string[] = [];
  collectStrings(shaped, strings);
  const hashed = strings.length > 0 ? hashIds(strings) : new BigUint64Array(0);
  const out = new ByteWriter(64);
  out.u8(recordVersions.filter);
  out.u16(0);
  const state = { ops: 0, hashed, next: 0 };
  emit(shaped, out, state);
  if (state.ops > recordLimits.filterOpsMax) fail(`its program has ${state.ops} operations (at most ${recordLimits.filterOpsMax})`, "filter");
  if (out.length > recordLimits.filterBytesMax) fail(`its program has ${out.length} bytes (at most ${recordLimits.filterBytesMax}: shorten the allow-list or the $in lists)`, "filter");
  out.view.setUint16(1, state.ops, true);
  return out.result();
}

function collectStrings(node: FilterNode, out: string[]): void {
  if (node.op === "allow") out.push(...node.strings);
  else if (node.op === "not") collectStrings(node.child, out);
  else if (node.op === "and" || node.op === "or") for (const c of node.children) collectStrings(c, out);
}

/** Writes `node`'s ops: its operands' first, then its own (postfix). */
function emit(node: FilterNode, out: ByteWriter, state: { ops: number; hashed: BigUint64Array; next: number }): void {
  switch (node.op) {
    case "all":
      out.u8(opCodes.all);
      break;
    case "kw_in":
      out.u8(opCodes.kw_in);
      out.u8(node.field.number);
      out.u16(node.values.length);
      for (const v of node.values) out.string16(v);
      break;
    case "num_cmp":
      out.u8(opCodes.num_cmp);
      out.u8(node.field.number);
      out.u8(cmpCodes[node.cmp]);
      out.f64(node.value);
      break;
    case "num_in":
      out.u8(opCodes.num_in);
      out.u8(node.field.number);
      out.u16(node.values.length);
      for (const v of node.values) out.f64(v);
      break;
    case "exists":
      out.u8(opCodes.exists);
      out.u8(node.field.number);
      break;
    case "and":
    case "or":
      for (const c of node.children) emit(c, out, state);
      out.u8(opCodes[node.op]);
      out.u16(node.children.length);
      break;
    case "not":
      emit(node.child, out, state);
      out.u8(opCodes.not);
      break;
    case "allow": {
      const n = node.keys.length + node.strings.length;
      if (n * 8 > recordLimits.filterBytesMax) fail(`an allow-list of ${n} ids (its program would pass ${recordLimits.filterBytesMax} bytes)`, "filter.allow");
      out.u8(opCodes.allow);
      out.u32(n);
      for (const key of node.keys) out.u64(key);
      for (let i = 0; i < node.strings.length; i++) out.u64(state.hashed[state.next++]);
      break;
    }
  }
  state.ops++;
}

/** `parseFilter` then `encodeFilter`: the program of a filter, or InvalidFilterError. */
export function compileFilter(filter: unknown, schema: RecordSchema, hashIds: (ids: string[]) => BigUint64Array): Uint8Array {
  return encodeFilter(parseFilter(filter, schema), hashIds);
}
