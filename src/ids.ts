/**
 * Ids: what callers name records by. A u64 key (a number or a bigint, as `keys.ts` takes them)
 * or a string id (1 to 1024 bytes of UTF-8), whose key is `wyhash(id) | 1 << 63`, computed
 * natively (`qv_hash_ids`, docs/records.md) so that every runtime and Worker agrees on it.
 */
import { native } from "./runtime/loader.ts";
import { check, InvalidKeyError } from "./errors.ts";
import { type Key, toKey } from "./keys.ts";
import { idBytes, packIds } from "./records/mod.ts";
import { plainTyped } from "./arrays.ts";

/** An id: a u64 key (number or bigint) or a string id. */
export type Id = Key | string;

/** What `resolveIds` gives: the keys, and the string ids at their positions (if any). */
export interface ResolvedIds {
  keys: BigUint64Array;
  /** `strings[i]` is the string id at position i, or undefined for a numeric id; absent if none. */
  strings: (string | undefined)[] | undefined;
}

/**
 * The keys of string ids, in one FFI call. Each id is validated first (InvalidKeyError: empty,
 * over 1024 bytes, not valid UTF-8). Thread safety: pure. Cost: O(total length).
 */
export function hashIds(ids: readonly string[], where?: (i: number) => string): BigUint64Array {
  const out = new BigUint64Array(Math.max(ids.length, 1));
  if (ids.length === 0) return out.subarray(0, 0);
  const { bytes, offsets } = packIds(ids, where);
  // A zero-length column cannot be passed as a pointer: ids are never empty, so bytes is not.
  check(native().fn.qv_hash_ids(bytes, bytes.length, offsets, ids.length, out));
  return out;
}

/** The key of one id (a string id hashed natively). InvalidKeyError for anything else. O(length). */
export function keyOfId(id: unknown, where = "id"): bigint {
  if (typeof id === "string") {
    idBytes(id, where);
    return hashIds([id])[0];
  }
  if (typeof id !== "number" && typeof id !== "bigint") {
    throw new InvalidKeyError(`${where}: an id is a number, a bigint or a string, not ${typeof id}`);
  }
  return toKey(id);
}

/**
 * The keys of a column of ids: a BigUint64Array is taken as it is; an array may mix numbers,
 * bigints and strings (the strings hashed in one FFI call). O(n).
 */
export function resolveIds(ids: BigUint64Array | ArrayLike<Id>): ResolvedIds {
  const column = plainTyped<BigUint64Array>(ids, BigUint64Array);
  if (column !== undefined) return { keys: column, strings: undefined };
  if (ids instanceof BigUint64Array) throw new InvalidKeyError("ids must be a BigUint64Array itself, not a Proxy or imitation of one");
  if (ids === null || typeof ids !== "object" || !Number.isSafeInteger(ids.length) || ids.length < 0) {
    throw new InvalidKeyError("ids must be a BigUint64Array or an array of ids");
  }
  const keys = new BigUint64Array(ids.length);
  let strings: (string | undefined)[] | undefined;
  const texts: string[] = [];
  const at: number[] = [];
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (typeof id === "string") {
      strings ??= new Array(ids.length).fill(undefined);
      strings[i] = id;
      texts.push(id);
      at.push(i);
    } else if (typeof id === "number" || typeof id === "bigint") {
      keys[i] = toKey(id);
    } else {
      throw new InvalidKeyError(`ids[${i}]: an id is a number, a bigint or a string, not ${typeof id}`);
    }
  }
  if (texts.length > 0) {
    const hashed = hashIds(texts, (j) => `ids[${at[j]}]`);
    for (let j = 0; j < at.length; j++) keys[at[j]] = hashed[j];
  }
  return { keys, strings };
}

/** A numeric id as results give it: a number when it is a safe integer, else a bigint. */
export function idOfKey(key: bigint): number | bigint {
  return key <= 0x1f_ffff_ffff_ffffn ? Number(key) : key;
}

/** Whether this platform stores a u64 as two u32 halves, low first (every target Quiver builds for). */
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The u32 halves of `keys`' elements (low half at 2i, high at 2i + 1), for `numericIdsInto`;
 * undefined on a big-endian platform (callers then take the BigInt path). O(1).
 */
export function keyWords(keys: BigUint64Array): Uint32Array | undefined {
  return littleEndian ? new Uint32Array(keys.buffer, keys.byteOffset, keys.length * 2) : undefined;
}

/**
 * Writes `out[to + i] = idOfKey(keys[from + i])` for i below `count` and returns true when no
 * key has its top bit (so none can be a string id's); returns false at the first that has it,
 * with `out` partly written. It reads the keys through their u32 halves (`words`, from
 * `keyWords`): reading an element of a BigUint64Array makes a BigInt, which cost ten times a
 * whole search's wrapper at k = 10. Thread safety: pure. O(count).
 */
export function numericIdsInto(
  keys: BigUint64Array,
  words: Uint32Array | undefined,
  from: number,
  count: number,
  out: Id[],
  to: number,
): boolean {
  if (words === undefined) {
    for (let i = 0; i < count; i++) {
      const key = keys[from + i];
      if (maybeStringKey(key)) return false;
      out[to + i] = idOfKey(key);
    }
    return true;
  }
  for (let i = 0; i < count; i++) {
    const high = words[2 * (from + i) + 1];
    // Below 2^53 (a high half below 2^21) the key is a safe integer: a number, exactly.
    if (high < 0x20_0000) out[to + i] = high * 0x1_0000_0000 + words[2 * (from + i)];
    else if (high >= 0x8000_0000) return false;
    else out[to + i] = keys[from + i];
  }
  return true;
}

/** Whether a key may be a string id's (their top bit is set; numeric keys may have it too). */
export function maybeStringKey(key: bigint): boolean {
  return key >= 1n << 63n;
}
