/**
 * Every misuse the issue lists gets its typed error (class and stable `code`), and leaves the
 * index exactly as it was: same size, and a search and an add still succeed afterwards.
 */
import * as mod from "../mod.ts";
import {
  ClosedError,
  DimensionMismatchError,
  errorClassFor,
  Index,
  InvalidArgumentError,
  InvalidDimensionsError,
  InvalidEfError,
  InvalidKError,
  InvalidKeyError,
  InvalidVectorError,
  type Metric,
  NotFoundError,
  QuiverError,
  UnknownMetricError,
} from "../mod.ts";
import { Status } from "../src/ffi.gen.ts";
import { assert, assertEquals, assertThrows, test } from "./harness.ts";

const d = 4;

/** Eight known vectors (distinct directions, so cosine can tell them apart), keys 0..7. */
function fixtureVector(i: number): Float32Array {
  return new Float32Array([i + 1, (i * 3) % 5, i % 2 === 0 ? 2 : -2, 0.5 * i]);
}

function fixture(metric: Metric = "l2"): Index {
  const index = new Index({ dimensions: d, metric });
  for (let i = 0; i < 8; i++) index.add(i, fixtureVector(i));
  assertEquals(index.size, 8);
  return index;
}

let probeKey = 1_000_000;

/**
 * The index is intact after a failed call: its size is `size`, an exact-match search finds key 0
 * first, and an add of a fresh key succeeds (then is removed again, restoring the size).
 */
function assertHealthy(index: Index, size: number): void {
  assertEquals(index.size, size, "a failed call changed the size");
  const hit = index.search(fixtureVector(0), 1);
  assertEquals(hit.keys, new BigUint64Array([0n]), "search after a failed call");
  assert(hit.distances[0] <= 1e-6, `self-distance ${hit.distances[0]}`);
  const key = probeKey++;
  index.add(key, fixtureVector(3).map((x) => x + 0.25));
  assertEquals(index.size, size + 1, "add after a failed call");
  assert(index.has(key));
  assertEquals(index.remove(key), true);
  assertEquals(index.size, size);
  assertEquals(index.verify().ok, true, "verify after a failed call");
}

// ---------------------------------------------------------------- vector length

test("errors: wrong vector length on add (single, batch) and search throws DimensionMismatchError", () => {
  using index = fixture();
  for (const length of [0, 1, d - 1, d + 1, 2 * d]) {
    assertThrows(() => index.add(100, new Float32Array(length).fill(1)), DimensionMismatchError, "DIMENSION_MISMATCH");
    assertThrows(() => index.add(100, Array.from({ length }, () => 1)), DimensionMismatchError, "DIMENSION_MISMATCH");
    assertThrows(() => index.search(new Float32Array(length).fill(1), 1), DimensionMismatchError, "DIMENSION_MISMATCH");
    assertEquals(index.has(100), false);
  }
  // A batch whose flat vector column is not keys.length * d floats long.
  assertThrows(() => index.add([100, 101], new Float32Array(2 * d - 1).fill(1)), DimensionMismatchError, "DIMENSION_MISMATCH");
  assertThrows(() => index.add([100, 101], new Float32Array(2 * d + 1).fill(1)), DimensionMismatchError, "DIMENSION_MISMATCH");
  assertThrows(() => index.add([100], new Float32Array(0)), DimensionMismatchError, "DIMENSION_MISMATCH");
  // searchBatch: a flat query column that is not a multiple of d.
  assertThrows(() => index.searchBatch(new Float32Array(d + 1), 1), DimensionMismatchError, "DIMENSION_MISMATCH");
  assertEquals(index.has(100), false);
  assertEquals(index.has(101), false);
  assertHealthy(index, 8);
});

test("errors: get takes no vector, so it has no length to get wrong: it returns d floats or undefined", () => {
  using index = fixture();
  const got = index.get(5);
  assert(got instanceof Float32Array);
  assertEquals(got, fixtureVector(5));
  assertEquals(index.get(12345), undefined);
  assertHealthy(index, 8);
});

// ---------------------------------------------------------------- non-finite components

const nonFinite = [NaN, Infinity, -Infinity];

test("errors: a NaN or ±Infinity component in add or search throws InvalidVectorError", () => {
  using index = fixture();
  for (const bad of nonFinite) {
    for (const position of [0, 2, d - 1]) {
      const v = fixtureVector(1);
      v[position] = bad;
      assertThrows(() => index.add(200, v), InvalidVectorError, "INVALID_VECTOR");
      // Upserting an existing key with a bad vector must keep the old vector.
      assertThrows(() => index.add(1, v), InvalidVectorError, "INVALID_VECTOR");
      assertThrows(() => index.search(v, 3), InvalidVectorError, "INVALID_VECTOR");
      assertThrows(() => index.searchBatch(new Float32Array([...fixtureVector(2), ...v]), 3), InvalidVectorError, "INVALID_VECTOR");
    }
  }
  assertEquals(index.has(200), false);
  assertEquals(index.get(1), fixtureVector(1));
  assertHealthy(index, 8);
});

test("errors: a non-finite vector in the middle of a batch adds nothing from the batch", () => {
  using index = fixture();
  const count = 20;
  for (const bad of nonFinite) {
    const keys = Array.from({ length: count }, (_, i) => 300 + i);
    const vectors = new Float32Array(count * d);
    for (let i = 0; i < count; i++) vectors.set(fixtureVector(i).map((x) => x + 0.1 * i), i * d);
    vectors[10 * d + 1] = bad; // vector 10 of 20
    assertThrows(() => index.add(keys, vectors, { threads: 2 }), InvalidVectorError, "INVALID_VECTOR");
    for (const key of keys) assertEquals(index.has(key), false, `key ${key} of a rejected batch was added`);
    // An upsert batch: valid vectors for existing keys 0..3 followed by a bad one.
    const upserts = new Float32Array(5 * d).fill(9);
    upserts[4 * d] = bad;
    assertThrows(() => index.add([0, 1, 2, 3, 400], upserts), InvalidVectorError, "INVALID_VECTOR");
    for (let i = 0; i < 4; i++) assertEquals(index.get(i), fixtureVector(i), `key ${i} was overwritten by a rejected batch`);
    assertEquals(index.has(400), false);
  }
  assertEquals(index.keys().length, 8);
  assertHealthy(index, 8);
});

// ---------------------------------------------------------------- keys

const badKeys: [string, unknown][] = [
  ["negative number", -1],
  ["negative bigint", -1n],
  ["fractional", 1.5],
  ["NaN", NaN],
  ["Infinity", Infinity],
  ["2^64 as bigint", 1n << 64n],
  ["2^64 + 5 as bigint", (1n << 64n) + 5n],
  ["MAX_SAFE_INTEGER + 1 as number", Number.MAX_SAFE_INTEGER + 1],
  ["2^64 as number", 2 ** 64],
  // Strings are string ids (issue #11): these are not.
  ["empty string", ""],
  ["lone-surrogate string", "a\ud800"],
  ["1025-byte string", "x".repeat(1025)],
  ["null", null],
  ["undefined", undefined],
  ["object", { valueOf: () => 1 }],
  ["symbol", Symbol("key")],
];

test("errors: a bad key throws InvalidKeyError from add, get, has, remove and view", () => {
  using index = fixture();
  const v = fixtureVector(6).map((x) => x + 0.5);
  const failures: string[] = [];
  for (const [what, key] of badKeys) {
    // deno-lint-ignore no-explicit-any
    const k = key as any;
    const calls: [string, () => unknown][] = [
      ["add", () => index.add(k, v)],
      ["get", () => index.get(k)],
      ["has", () => index.has(k)],
      ["remove", () => index.remove(k)],
      ["view", () => index.view(k)],
      ["batch", () => index.add([500, k, 501], new Float32Array(3 * d).fill(1))],
    ];
    for (const [name, call] of calls) {
      try {
        assertThrows(call, InvalidKeyError, "INVALID_KEY");
      } catch (error) {
        failures.push(`${name} with a ${what} key: ${(error as Error).message}`);
      }
    }
  }
  assertEquals(index.has(500), false, "a batch with a bad key added its first key");
  assertEquals(index.has(501), false);
  assertEquals(index.stats().guards_live, 0);
  assertHealthy(index, 8);
  // Last, so that the checks above run even when this one fails.
  assertEquals(failures, [], "calls that did not throw InvalidKeyError");
});

test("errors: the key range ends are valid: 0, MAX_SAFE_INTEGER, 2^53 and 2^64 - 1 as bigints", () => {
  using index = fixture();
  const edges = [0n, BigInt(Number.MAX_SAFE_INTEGER), 1n << 53n, (1n << 64n) - 1n];
  for (const [i, key] of edges.entries()) index.add(key, fixtureVector(i).map((x) => x * 3 + 7));
  index.add(Number.MAX_SAFE_INTEGER, fixtureVector(2).map((x) => x * 3 + 7)); // the same key as a number: upsert
  assertEquals(index.size, 8 - 1 + edges.length, "key 0 was an upsert, the rest are new");
  for (const key of edges) assert(index.has(key), `key ${key}`);
  assertEquals(index.get(Number.MAX_SAFE_INTEGER), fixtureVector(2).map((x) => x * 3 + 7));
  const top = index.search(fixtureVector(3).map((x) => x * 3 + 7), 1);
  assertEquals(top.keys, new BigUint64Array([(1n << 64n) - 1n]));
  assertEquals(index.remove((1n << 64n) - 1n), true);
  assertEquals(index.has((1n << 64n) - 1n), false);
});

test("errors: search ids at each edge of the numeric fast path: numbers below 2^53, bigints from 2^53, every query of a batch", () => {
  // The ids are read through the keys' u32 halves (src/ids.ts numericIdsInto): each edge of the
  // high half (0, 2^21 - 1, 2^21, 2^31 - 1) and of the low half is here, and a top-bit numeric
  // key (2^63, 2^64 - 1) takes the payload path and still comes back as its bigint.
  using index = new Index({ dimensions: 2, metric: "l2" });
  const keys = [0n, 1n, 0xffff_ffffn, 1n << 32n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n];
  keys.forEach((key, i) => index.add(key, [i, 0]));
  const expected = (key: bigint) => (key <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(key) : key);
  for (const [i, key] of keys.entries()) {
    const hit = index.search([i, 0.1], 1);
    assertEquals(hit.keys, new BigUint64Array([key]), `key ${key}`);
    assertEquals(hit.ids, [expected(key)], `id of key ${key}`);
    // k above the scratch column's 64: the fresh-column path gives the same.
    assertEquals(index.search([i, 0.1], 100, { ef: 100 }).ids[0], expected(key), `k = 100, key ${key}`);
  }
  const numeric = keys.slice(0, 8);
  const queries = new Float32Array(numeric.flatMap((_, i) => [i, 0.1]));
  const batch = index.searchBatch(queries, 2);
  for (let i = 0; i < numeric.length; i++) {
    assertEquals(batch.ids[i * 2], expected(numeric[i]), `batch query ${i}`);
    assertEquals(batch.ids[i * 2 + 1], expected(batch.keys[i * 2 + 1]), `batch query ${i}, second`);
  }
  // A top-bit key among a batch's results: every id still its key's.
  const mixed = index.searchBatch(new Float32Array([8, 0.1, 0, 0.1]), 2);
  for (let j = 0; j < 4; j++) assertEquals(mixed.ids[j], expected(mixed.keys[j]), `mixed batch result ${j}`);
});

// ---------------------------------------------------------------- k and ef

test("errors: k <= 0 or non-integer k throws InvalidKError; ef < k throws InvalidEfError", () => {
  using index = fixture();
  const q = fixtureVector(2);
  for (const k of [0, -1, -10, 1.5, 0.5, NaN, Infinity, -Infinity, "3", null, undefined, 3n]) {
    // deno-lint-ignore no-explicit-any
    assertThrows(() => index.search(q, k as any), InvalidKError, "INVALID_K");
    // deno-lint-ignore no-explicit-any
    assertThrows(() => index.searchBatch(q, k as any), InvalidKError, "INVALID_K");
  }
  for (const [k, ef] of [[5, 4], [2, 1], [10, 0], [3, -3], [3, 3.5], [1, NaN], [1, "8"]] as [number, unknown][]) {
    // deno-lint-ignore no-explicit-any
    assertThrows(() => index.search(q, k, { ef: ef as any }), InvalidEfError, "INVALID_EF");
    // deno-lint-ignore no-explicit-any
    assertThrows(() => index.searchBatch(q, k, { ef: ef as any }), InvalidEfError, "INVALID_EF");
  }
  // ef == k is the boundary and is valid; k larger than the index returns what there is.
  assertEquals(index.search(q, 3, { ef: 3 }).keys.length, 3);
  const all = index.search(q, 50);
  assertEquals(all.keys.length, 8);
  assertEquals([...all.keys].sort((a, b) => Number(a - b)), [0n, 1n, 2n, 3n, 4n, 5n, 6n, 7n]);
  assertHealthy(index, 8);
});

test("errors: search on an empty index returns an empty result, not an error", () => {
  for (const metric of ["l2", "ip", "cosine"] as const) {
    using index = new Index({ dimensions: d, metric });
    const r = index.search(fixtureVector(1), 5);
    assertEquals(r.keys, new BigUint64Array(0));
    assertEquals(r.distances, new Float32Array(0));
    const b = index.searchBatch(new Float32Array([...fixtureVector(1), ...fixtureVector(2)]), 3);
    assertEquals(b.counts, new Uint32Array([0, 0]));
    assertEquals(index.keys(), new BigUint64Array(0));
    assertEquals(index.size, 0);
    // Also empty again after the only key is removed (the tombstone is never returned).
    index.add(9, fixtureVector(1));
    assertEquals(index.remove(9), true);
    assertEquals(index.search(fixtureVector(1), 5).keys, new BigUint64Array(0));
    index.add(10, fixtureVector(2));
    assertEquals(index.search(fixtureVector(2), 5).keys, new BigUint64Array([10n]));
  }
});

// ---------------------------------------------------------------- closed

test("errors: every call after close() throws ClosedError; close() twice is a no-op", () => {
  const index = fixture();
  const keep = index.snapshot();
  index.close();
  assertEquals(index.closed, true);
  const calls: [string, () => unknown][] = [
    ["add", () => index.add(100, fixtureVector(1))],
    ["add batch", () => index.add([100], fixtureVector(1))],
    ["search", () => index.search(fixtureVector(1), 1)],
    ["searchBatch", () => index.searchBatch(fixtureVector(1), 1)],
    ["get", () => index.get(1)],
    ["has", () => index.has(1)],
    ["remove", () => index.remove(1)],
    ["size", () => index.size],
    ["keys", () => index.keys()],
    ["stats", () => index.stats()],
    ["verify", () => index.verify()],
    ["view", () => index.view(1)],
    ["snapshot", () => index.snapshot()],
    ["remap", () => index.remap()],
    ["reserve", () => index.reserve(1000)],
    ["capacity", () => index.capacity],
    ["epoch", () => index.epoch],
    ["handle", () => index.handle],
    ["snapshot taken before close", () => keep.size],
  ];
  for (const [name, call] of calls) {
    try {
      assertThrows(call, ClosedError, "CLOSED");
    } catch (error) {
      throw new Error(`${name} after close(): ${(error as Error).message}`);
    }
  }
  index.close(); // a no-op, not a throw
  index[Symbol.dispose]();
  assertEquals(index.closed, true);
  assertThrows(() => index.size, ClosedError, "CLOSED");
});

test("errors: closing one index leaves another one working", () => {
  using other = fixture();
  const index = fixture();
  index.close();
  index.close();
  assertHealthy(other, 8);
});

test("errors: `using` closes the index (and its views) at scope end", () => {
  let escaped: Index | undefined;
  let kept: Float32Array | undefined;
  {
    using index = fixture();
    escaped = index;
    using view = index.view(3);
    kept = view.array;
    assertEquals(kept, fixtureVector(3));
    assertEquals(index.closed, false);
  }
  assertEquals(escaped.closed, true);
  assertThrows(() => escaped!.size, ClosedError, "CLOSED");
  assertThrows(() => escaped!.search(fixtureVector(1), 1), ClosedError, "CLOSED");
  assertEquals(kept.length, 0, "a view's array outlived its index");
  assertEquals(kept[0], undefined);
});

// ---------------------------------------------------------------- creation options

test("errors: bad dimensions at creation throw InvalidDimensionsError", () => {
  for (const dimensions of [0, -1, -64, 1.5, 0.5, NaN, Infinity, 1e9, 65537, 2 ** 32 + 3, "4", null]) {
    // deno-lint-ignore no-explicit-any
    assertThrows(() => new Index({ dimensions: dimensions as any }), InvalidDimensionsError, "INVALID_DIMENSIONS");
  }
  // deno-lint-ignore no-explicit-any
  assertThrows(() => new Index({} as any), InvalidDimensionsError, "INVALID_DIMENSIONS");
  // The range ends are valid.
  for (const dimensions of [1, 65536]) {
    using index = new Index({ dimensions });
    assertEquals(index.dimensions, dimensions);
    index.add(1, new Float32Array(dimensions).fill(0.5));
    assertEquals(index.search(new Float32Array(dimensions).fill(0.5), 1).keys, new BigUint64Array([1n]));
  }
});

test("errors: an unknown metric throws UnknownMetricError (including Object.prototype names)", () => {
  const failures: string[] = [];
  for (const metric of ["euclidean", "L2", "dot", "", "cos", "toString", "constructor", "__proto__", "hasOwnProperty", 1]) {
    try {
      // deno-lint-ignore no-explicit-any
      assertThrows(() => new Index({ dimensions: d, metric: metric as any }), UnknownMetricError, "UNKNOWN_METRIC");
    } catch (error) {
      failures.push(`metric ${JSON.stringify(metric)}: ${(error as Error).message}`);
    }
  }
  for (const [metric, code] of [["l2", 0], ["ip", 1], ["cosine", 2]] as const) {
    using index = new Index({ dimensions: d, metric });
    assertEquals(index.stats().metric, code);
  }
  assertEquals(failures, [], "metrics that did not throw UnknownMetricError");
});

test("errors: bad m, efConstruction and ef options throw InvalidArgumentError", () => {
  const bad: [string, unknown][] = [
    ["m", 0], ["m", 1], ["m", -16], ["m", 1.5], ["m", 129], ["m", NaN], ["m", "16"],
    ["efConstruction", 0], ["efConstruction", -1], ["efConstruction", 2.5], ["efConstruction", 65537], ["efConstruction", "128"],
    ["ef", 0], ["ef", -5], ["ef", 10.5], ["ef", Infinity],
    ["capacity", -1], ["capacity", 0.5],
    ["seed", -1], ["seed", 1.5],
  ];
  for (const [name, value] of bad) {
    try {
      // deno-lint-ignore no-explicit-any
      assertThrows(() => new Index({ dimensions: d, [name]: value } as any), InvalidArgumentError, "INVALID_ARGUMENT");
    } catch (error) {
      throw new Error(`${name} = ${String(value)}: ${(error as Error).message}`);
    }
  }
  // The range ends are valid and reach the native side.
  for (const m of [2, 128]) {
    using index = new Index({ dimensions: d, m, efConstruction: 1 });
    assertEquals(index.stats().m, m);
    for (let i = 0; i < 8; i++) index.add(i, fixtureVector(i));
    assertEquals(index.verify().ok, true);
    assertHealthy(index, 8);
  }
});

test("errors: cosine rejects the zero vector in add, batch add and search with InvalidVectorError", () => {
  using index = fixture("cosine");
  const zero = new Float32Array(d);
  assertThrows(() => index.add(600, zero), InvalidVectorError, "INVALID_VECTOR");
  assertThrows(() => index.add(1, zero), InvalidVectorError, "INVALID_VECTOR");
  assertThrows(() => index.add([600, 601], new Float32Array([...fixtureVector(1), ...zero])), InvalidVectorError, "INVALID_VECTOR");
  assertThrows(() => index.search(zero, 1), InvalidVectorError, "INVALID_VECTOR");
  assertThrows(() => index.searchBatch(new Float32Array([...fixtureVector(1), ...zero]), 1), InvalidVectorError, "INVALID_VECTOR");
  assertEquals(index.has(600), false);
  assertEquals(index.has(601), false);
  // Key 1 still holds its (normalized) vector.
  const v = fixtureVector(1);
  const norm = Math.hypot(...v);
  const got = index.get(1)!;
  for (let j = 0; j < d; j++) assert(Math.abs(got[j] - v[j] / norm) < 1e-6, `component ${j}: ${got[j]}`);
  // Under l2 and ip the zero vector is fine.
  for (const metric of ["l2", "ip"] as const) {
    using other = new Index({ dimensions: d, metric });
    other.add(1, zero);
    assertEquals(other.get(1), zero);
  }
  assertHealthy(index, 8);
});

test("errors: a missing key is undefined / false from get, has and remove, and NotFoundError from view", () => {
  using index = fixture();
  assertEquals(index.get(77), undefined);
  assertEquals(index.has(77), false);
  assertEquals(index.remove(77), false);
  assertThrows(() => index.view(77), NotFoundError, "NOT_FOUND");
  assertEquals(index.remove(3), true);
  assertEquals(index.remove(3), false);
  assertThrows(() => index.view(3), NotFoundError, "NOT_FOUND");
  assertEquals(index.stats().guards_live, 0);
  assertHealthy(index, 7);
});

// ---------------------------------------------------------------- the status table

/** Status names (other than ok) without an exported error class whose `status` matches. */
function statusesWithoutClass(table: Record<string, number>): string[] {
  const missing: string[] = [];
  for (const [name, status] of Object.entries(table)) {
    if (name === "ok") continue;
    const cls = errorClassFor(status);
    const exportedName = name.split("_").map((part) => part[0].toUpperCase() + part.slice(1)).join("") + "Error";
    // deno-lint-ignore no-explicit-any
    const exported = (mod as any)[exportedName];
    if (cls === undefined || exported !== cls) {
      missing.push(name);
      continue;
    }
    const error = new cls("detail");
    if (!(error instanceof QuiverError) || error.status !== status || error.code !== name.toUpperCase()) missing.push(name);
  }
  return missing;
}

test("errors: every native status has an exported error class with the matching status and code", () => {
  assertEquals(statusesWithoutClass(Status), []);
  // Canary: a status added to the native table without a class is caught.
  assertEquals(statusesWithoutClass({ ...Status, brand_new_status: 99 }), ["brand_new_status"]);
  // And the mapping is one-to-one: no two statuses share a class.
  const classes = Object.values(Status).filter((s) => s !== Status.ok).map((s) => errorClassFor(s));
  assertEquals(new Set(classes).size, classes.length);
  // Every QuiverError subclass mod.ts exports names a real status.
  const statuses = new Set<number>(Object.values(Status));
  for (const [name, value] of Object.entries(mod)) {
    if (typeof value !== "function" || value === QuiverError) continue;
    if (!(value.prototype instanceof QuiverError)) continue;
    // deno-lint-ignore no-explicit-any
    const error = new (value as any)();
    assert(statuses.has(error.status) && error.status !== Status.ok, `${name} has status ${error.status}`);
    assertEquals(errorClassFor(error.status), value, name);
    assertEquals(error.name, name);
  }
  // A thrown error carries the message of its status and the detail.
  const e = assertThrows(() => new Index({ dimensions: 0 }), InvalidDimensionsError, "INVALID_DIMENSIONS");
  assert(e.message.includes("between 1 and 65536"), e.message);
  assertEquals(e.status, Status.invalid_dimensions);
});
