/**
 * Hostile misuse of the public API: inputs a caller can build that once crashed the process,
 * read memory past a buffer, gave a wrong result without an error, or threw an untyped error.
 * Each test names the defect it guards; each fails on the code before its fix.
 */
import {
  DimensionMismatchError,
  Index,
  InvalidArgumentError,
  InvalidFilterError,
  InvalidKeyError,
} from "../mod.ts";
import { assert, assertEquals, assertThrows, test } from "./harness.ts";

const d = 4;

function filled(n: number): Index {
  const index = new Index({ dimensions: d, indexes: { lang: "keyword", year: "number" } });
  for (let i = 0; i < n; i++) index.add(i, [i, 1, 2, 3]);
  return index;
}

test("hostile: a Float32Array that claims more than its length is never read past its end", () => {
  using index = filled(8);
  // One float of a view whose buffer holds three more after it: an own `length` of 4 made the
  // native side read those three (memory the view does not cover) and store them.
  const buffer = new Float32Array([1, 7, 7, 7]).buffer;
  const own = new Float32Array(buffer, 0, 1);
  Object.defineProperty(own, "length", { value: d });
  assertThrows(() => index.add(100, own), DimensionMismatchError);
  assert(!index.has(100), "nothing was written");
  assertThrows(() => index.search(own, 1), DimensionMismatchError);

  class Liar extends Float32Array {
    override get length(): number {
      return d;
    }
  }
  const liar = new Liar(buffer, 0, 1);
  assertThrows(() => index.add(BigUint64Array.of(101n), liar), DimensionMismatchError);
  assert(!index.has(101), "nothing was written by the batch");
  assertThrows(() => index.searchBatch(liar, 1), DimensionMismatchError);

  class LiarKeys extends BigUint64Array {
    override get length(): number {
      return 2;
    }
  }
  // One real key and two vectors: the second key would have been read past the array.
  assertThrows(() => index.add(new LiarKeys(1), new Float32Array(2 * d)), DimensionMismatchError);
  assertEquals(index.size, 8);
});

test("hostile: a Proxy of a typed array is a typed error, not a raw TypeError from the FFI layer", () => {
  using index = filled(8);
  assertThrows(() => index.add(100, new Proxy(new Float32Array(d), {})), InvalidArgumentError);
  assertThrows(() => index.search(new Proxy(new Float32Array(d), {}), 1), InvalidArgumentError);
  assertThrows(() => index.add(new Proxy(BigUint64Array.of(1n), {}), new Float32Array(d)), InvalidKeyError);
  assertThrows(() => index.add(BigUint64Array.of(1n), new Proxy(new Float32Array(d), {})), InvalidArgumentError);
  assertThrows(() => index.searchBatch(new Proxy(new Float32Array(d), {}), 1), InvalidArgumentError);
  assertEquals(index.size, 8);
});

test("hostile: an array-like vector is sized by the index before anything is allocated or iterated", () => {
  using index = filled(8);
  // A claimed length of 2^32 allocated 16 GiB and wrote every element: Deno was OOM-killed.
  assertThrows(() => index.add(100, { length: 2 ** 40 }), DimensionMismatchError);
  assertThrows(() => index.search({ length: 2 ** 40 }, 1), DimensionMismatchError);
  // Elements are read by index: an iterator (which need not end) is never called.
  const sneaky = {
    length: d,
    0: 5,
    1: 6,
    2: 7,
    3: 8,
    [Symbol.iterator](): Iterator<number> {
      throw new Error("iterated");
    },
  };
  index.add(100, sneaky);
  assertEquals(Array.from(index.get(100)!), [5, 6, 7, 8]);
  // A bigint or symbol element was a raw TypeError from the conversion.
  assertThrows(() => index.add(101, [1n, 2, 3, 4] as unknown as number[]), InvalidArgumentError);
  assertThrows(() => index.add(101, [Symbol("x"), 2, 3, 4] as unknown as number[]), InvalidArgumentError);
  assert(!index.has(101), "nothing was written");
});

test("hostile: a hole in an $in or $nin list is InvalidFilterError, not an empty keyword or NaN", () => {
  using index = filled(0);
  index.add(1, [1, 0, 0, 0], { lang: "en", year: 2020 });
  index.add(2, [0, 1, 0, 0], { lang: "", year: 2021 });
  index.add(3, [0, 0, 1, 0], { lang: "de", year: 2022 });
  // `[, "en"]` matched the record whose lang is "" (the hole became an empty keyword).
  // deno-lint-ignore no-sparse-arrays
  const sparse = [, "en"] as unknown as string[];
  assertThrows(() => index.count({ lang: { $in: sparse } }), InvalidFilterError);
  assertThrows(() => index.count({ lang: { $nin: sparse } }), InvalidFilterError);
  // deno-lint-ignore no-sparse-arrays
  assertThrows(() => index.count({ year: { $in: [, 2020] as unknown as number[] } }), InvalidFilterError);
  assertThrows(() => index.search([1, 0, 0, 0], 3, { filter: { lang: { $in: sparse } } }), InvalidFilterError);
  assertEquals(index.count({ lang: { $in: ["en"] } }), 1);
});

test("hostile: a batch asking for more results than fit in memory is a typed error, not an abort", async () => {
  using index = new Index({ dimensions: 1 });
  for (let i = 0; i < 4; i++) index.add(i, [i]);
  // 4096 one-float queries with k = 2^20 ask for 2^32 result slots (tens of GB: a RangeError,
  // or V8's fatal out-of-memory abort while filling the ids).
  const queries = new Float32Array(4096).fill(1);
  assertThrows(() => index.searchBatch(queries, 1 << 20), InvalidArgumentError);
  let rejected: unknown;
  await index.searchBatchAsync(queries, 1 << 20).catch((error) => (rejected = error));
  assert(rejected instanceof InvalidArgumentError, `searchBatchAsync rejected with ${String(rejected)}`);
  // Within the bound the batch still runs.
  assertEquals(index.searchBatch(queries.subarray(0, 4), 1 << 20).counts.length, 4);
});
