/** Caller keys: unsigned 64-bit integers given as safe-integer numbers or bigints. */
import { InvalidKeyError } from "./errors.ts";

export type Key = number | bigint;
const max = (1n << 64n) - 1n;

/** Validates one key and returns it as a bigint. Cost: O(1). */
export function toKey(key: unknown): bigint {
  if (typeof key === "bigint") {
    if (key < 0n || key > max) throw new InvalidKeyError(`${key} is outside [0, 2^64 - 1]`);
    return key;
  }
  if (typeof key === "number") {
    if (!Number.isSafeInteger(key) || key < 0) {
      throw new InvalidKeyError(`${key} is not a non-negative safe integer (use a bigint above 2^53)`);
    }
    return BigInt(key);
  }
  throw new InvalidKeyError(`a key must be a number or a bigint, not ${typeof key}`);
}

/** Validates a column of keys into a BigUint64Array (no copy when one is passed). */
export function toKeyColumn(keys: BigUint64Array | ArrayLike<Key>): BigUint64Array {
  if (keys instanceof BigUint64Array) return keys;
  const out = new BigUint64Array(keys.length);
  for (let i = 0; i < keys.length; i++) out[i] = toKey(keys[i]);
  return out;
}
