/**
 * Hostile misuse of the public API: inputs a caller can build that once crashed the process,
 * read memory past a buffer, gave a wrong result without an error, or threw an untyped error.
 * Each test names the defect it guards; each fails on the code before its fix.
 */
import {
  asyncStats,
  ClosedError,
  configureAsync,
  DimensionMismatchError,
  Index,
  InvalidArgumentError,
  InvalidFilterError,
  InvalidKeyError,
  kernels,
} from "../mod.ts";
import { pool } from "../src/async/pool.ts";
import { fileFormat } from "../src/ffi.gen.ts";
import { assert, assertEquals, assertThrows, tempDir, test } from "./harness.ts";

/** The rejection of `promise` (an AssertionError-worthy Error if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  return new Error("expected a rejection, the Promise resolved");
}

function keysOf(n: number, from = 0): BigUint64Array {
  return BigUint64Array.from({ length: n }, (_, i) => BigInt(from + i));
}

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

test("hostile: an onProgress that throws neither escapes the pool nor stalls it", async () => {
  using index = new Index({ dimensions: d });
  const n = 600;
  // The throw escaped the pool's reply handler (an uncaught exception: the process ended, or
  // hung with the Worker's slot busy forever).
  let calls = 0;
  const error = await rejection(index.addAsync(keysOf(n), new Float32Array(n * d).fill(1), {
    chunk: 100,
    onProgress: () => {
      calls++;
      throw new Error("from onProgress");
    },
  }));
  assertEquals((error as Error).message, "from onProgress");
  assertEquals(calls, 1, "not called again after it threw");
  // The call ran to its end: its work stands, and the pool takes the next call.
  assertEquals(index.size, n);
  assertEquals((await index.searchAsync(new Float32Array(d).fill(1), 1)).ids.length, 1);
});

test("hostile: a signal or onProgress of the wrong type is InvalidArgumentError before anything runs", async () => {
  using index = new Index({ dimensions: d });
  // `{}` failed only after the task was posted, and again inside the pool's reply handler.
  const signal = {} as unknown as AbortSignal;
  assert(await rejection(index.addAsync(keysOf(4), new Float32Array(4 * d).fill(1), { signal })) instanceof InvalidArgumentError);
  assert(await rejection(index.compactAsync({ signal })) instanceof InvalidArgumentError);
  const onProgress = 5 as unknown as () => void;
  assert(await rejection(index.addAsync(keysOf(4), new Float32Array(4 * d).fill(1), { onProgress })) instanceof InvalidArgumentError);
  assertEquals(index.size, 0, "nothing was added");
  index.add(1, new Float32Array(d).fill(1));
  assertEquals((await index.searchAsync(new Float32Array(d).fill(1), 1)).ids, [1]);
});

test("hostile: async options that cannot be posted to a Worker are InvalidArgumentError, and fail only their call", async () => {
  const dir = tempDir();
  // A function in openAsync's options was a DataCloneError thrown in the pool: Deno exited.
  const fn = (() => 1) as unknown;
  assert(await rejection(Index.openAsync(`${dir}/a.qv`, { dimensions: d, extra: fn } as never)) instanceof InvalidArgumentError);
  assert(await rejection(Index.openAsync(`${dir}/a.qv`, null as never)) instanceof InvalidArgumentError);
  using index = new Index({ dimensions: d, indexes: { lang: "keyword" } });
  index.add(1, new Float32Array(d).fill(1), { lang: "en" });
  const query = new Float32Array(d).fill(1);
  assert(await rejection(index.searchAsync(query, 1, { rerank: fn as boolean })) instanceof InvalidArgumentError);
  // A Proxy filter passes validation but not the structured clone; searches waiting with it
  // (coalesced into one message) must still succeed.
  const searches = Array.from({ length: 12 }, (_, i) => index.searchAsync(query, 1, i === 5 ? { filter: new Proxy({ lang: "en" }, {}) } : { filter: { lang: "en" } }));
  const settled = await Promise.allSettled(searches);
  assertEquals(settled.map((r) => r.status === "fulfilled" ? "ok" : (r.reason as Error).constructor.name), settled.map((_, i) => i === 5 ? "InvalidArgumentError" : "ok"));
  assert(await rejection(index.searchBatchAsync(query, 1, { filter: new Proxy({ lang: "en" }, {}) })) instanceof InvalidArgumentError);
  using opened = await Index.openAsync(`${dir}/b.qv`, { dimensions: d });
  assertEquals(opened.size, 0);
});

test("hostile: the pool fails a task it cannot post, and keeps serving", async () => {
  using index = new Index({ dimensions: d });
  index.add(1, new Float32Array(d).fill(1));
  // The backstop under api.ts's clone: a body the structured clone refuses.
  const reply = await new Promise<{ type: string; status?: number }>((resolve) => {
    const body = { op: "search", query: new Float32Array(d), k: 1, options: { filter: () => 1 } } as never;
    pool.submit(index.handle, body, { settle: (r) => resolve(r) });
  });
  assertEquals(reply.type, "failed");
  assertEquals(reply.status, new InvalidArgumentError().status);
  assertEquals(asyncStats().running, 0, "no Worker is left marked busy");
  assertEquals((await index.searchAsync(new Float32Array(d).fill(1), 1)).ids, [1]);
});

test("hostile: configureAsync refuses bad values with InvalidArgumentError and changes nothing", () => {
  const before = asyncStats();
  // A RangeError, after nice and idleMs had already been set.
  assertThrows(() => configureAsync({ nice: 7, workers: -1 }), InvalidArgumentError);
  assertThrows(() => configureAsync({ workers: NaN }), InvalidArgumentError);
  assertThrows(() => configureAsync({ idleMs: -1 }), InvalidArgumentError);
  assertThrows(() => configureAsync(null as never), InvalidArgumentError);
  const after = asyncStats();
  assertEquals([after.workers, after.nice, after.idleMs], [before.workers, before.nice, before.idleMs]);
});

test("hostile: the async calls of a closed index reject, never throw", async () => {
  const index = new Index({ dimensions: d });
  index.close();
  // verifyAsync, backupAsync, syncAsync and checkpointAsync threw ClosedError synchronously.
  const calls: (() => Promise<unknown>)[] = [
    () => index.verifyAsync(),
    () => index.backupAsync(`${tempDir()}/x.qv`),
    () => index.syncAsync(),
    () => index.checkpointAsync(),
    () => index.searchAsync(new Float32Array(d), 1),
    () => index.compactAsync(),
  ];
  for (const call of calls) {
    let promise: Promise<unknown> | undefined;
    try {
      promise = call();
    } catch (error) {
      throw new Error(`threw synchronously: ${String(error)}`);
    }
    assert(await rejection(promise) instanceof ClosedError);
  }
});

test("hostile: indexed values are those of the stored metadata, even when a getter changes its answer", () => {
  using index = filled(0);
  let reads = 0;
  // "en" for the validation and the JSON, "de" from the third read on: the terms said "de"
  // while the stored metadata said "en".
  const metadata = {
    get lang(): string {
      return reads++ < 2 ? "en" : "de";
    },
  };
  index.add("shifty", [1, 0, 0, 0], metadata);
  const stored = index.getRecord("shifty")!.metadata!;
  assertEquals(index.count({ lang: stored.lang as string }), 1, `a filter on the stored value ${String(stored.lang)} finds it`);
  assertEquals(index.count({ lang: stored.lang === "en" ? "de" : "en" }), 0);
});

test("hostile: Snapshot.save takes only a string path", () => {
  using index = filled(4);
  using snapshot = index.snapshot();
  const target = `${tempDir()}/s.qv`;
  // An object (or a number) was encoded as its string form and saved there.
  const sneaky = { toString: () => target } as unknown as string;
  assertThrows(() => snapshot.save(sneaky), InvalidArgumentError);
  assertThrows(() => snapshot.save(7 as unknown as string), InvalidArgumentError);
  assertThrows(() => snapshot.save(""), InvalidArgumentError);
  snapshot.save(target);
  using saved = Index.open(target, { readOnly: true });
  assertEquals(saved.size, 4);
});

test("hostile: the exported kernels read a Float32Array's real length, and refuse a Proxy typed", () => {
  class Liar extends Float32Array {
    override get length(): number {
      return 1 << 20;
    }
  }
  // 2^20 floats were read from a 16-byte buffer (NaN here, or a crash past the heap's end).
  assertEquals(kernels.l2sq(new Liar([1, 2, 3, 4]), new Liar([1, 2, 3, 5])), 1);
  assertEquals(kernels.dot(new Liar([1, 2, 3, 4]), new Float32Array([1, 1, 1, 1])), 10);
  // Four dimensions: one granule of codes after the line of terms (not 2^20 of them).
  assertEquals(kernels.encodeI8(new Liar([1, 2, 3, 4])).length, 64 + fileFormat.i8Granule);
  assertThrows(() => kernels.l2sq(new Proxy(new Float32Array(4), {}), new Float32Array(4)), InvalidArgumentError);
  // The i8 kernels are given each buffer's length: a lying one was read past the buffer too.
  const code = kernels.encodeI8(new Float32Array([1, 2, 3, 4]));
  class LiarBytes extends Uint8Array {
    override get length(): number {
      return 1 << 20;
    }
  }
  const liar = new LiarBytes(code);
  // d = 2^16 needs more bytes than the real buffer holds: NaN (too short), not an overread.
  assert(Number.isNaN(kernels.l2sqI8(liar, liar, 1 << 16)), "a too-short buffer is NaN");
  assertEquals(kernels.l2sqI8(liar, code, 4), kernels.l2sqI8(code, code, 4));
});

test("hostile: an addAsync input over 1 MiB that the caller transfers and overwrites during the call is stored as given (old: read in place, after the move)", async () => {
  const d = 64;
  const n = 8192; // 2 MiB of vectors: once pinned and read by address, now copied at the call
  using index = new Index({ dimensions: d });
  const vectors = new Float32Array(n * d);
  for (let i = 0; i < vectors.length; i++) vectors[i] = Math.sin(i);
  const keys = keysOf(n);
  const expected = vectors.slice();
  const pending = index.addAsync(keys, vectors);
  // The caller moves the buffer away and writes over it while the Worker is still adding.
  // deno-lint-ignore no-explicit-any
  const moved = (vectors.buffer as any).transfer() as ArrayBuffer;
  new Float32Array(moved).fill(3);
  await pending;
  assertEquals(index.size, n);
  for (const i of [0, 1, n / 2, n - 2, n - 1]) {
    const got = index.get(i)!;
    for (let j = 0; j < d; j++) assertEquals(got[j], expected[i * d + j], `vector ${i}[${j}]`);
  }
});

test("hostile: a misspelt option of new Index or open, or a bad validate, is InvalidArgumentError (old: silently the default)", () => {
  assertThrows(() => new Index({ dimensions: 4, metrc: "cosine" } as never), InvalidArgumentError);
  const path = `${tempDir()}/idx`;
  assertThrows(() => Index.open(path, { dimensions: 4, readonly: true } as never), InvalidArgumentError);
  assertThrows(() => Index.open(path, { dimensions: 4, validate: "bogus" } as never), InvalidArgumentError);
  using index = Index.open(path, { dimensions: 4, validate: "full" });
  assertEquals(index.size, 0);
});
