/**
 * Persistence: what a closed index holds is what it reopens with (keys, sizes, every vector bit
 * for bit, search results), writes after a reopen persist as well, growth through many remaps
 * persists, and open reports missing files, mismatched options, other writers and read-only
 * misuse with typed errors. Cross-process locking is checked with child processes
 * (fixtures/lock_child.ts) running under the same runtime.
 */
import { AlreadyExistsError, DimensionMismatchError, Index, NoIndexError, InvalidArgumentError, InvalidDimensionsError, LockedError, CorruptIndexError, QuiverError, ReadOnlyError } from "../mod.ts";
import { assert, assertEquals, assertThrows, clustered, killChildren, rng, runSync, runtime, seedFromEnv, spawnRuntime, tempDir, test } from "./harness.ts";
import { activeHeaderSlot, exists, fileSize, headerValue, indexFiles, loadFormat, readBytes, removeDir, removeFile, sameVector, seededVector, writeBytes } from "./fixtures/util.ts";
import { renameSync } from "node:fs";

const lockChild = new URL("./fixtures/lock_child.ts", import.meta.url).pathname;

/** Everything observable about an index's contents, for exact comparison across a reopen. */
function image(index: Index, queries: Float32Array) {
  const keys = Array.from(index.keys()).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const vectors = keys.map((k) => index.get(k)!);
  const s = index.stats();
  const k = 10;
  const d = index.dimensions;
  const results = [];
  for (let q = 0; q < queries.length / d; q++) results.push(index.search(queries.subarray(q * d, (q + 1) * d), k, { ef: 64 }));
  const batch = index.searchBatch(queries, k, { ef: 64 });
  return {
    keys,
    vectors,
    size: index.size,
    stats: { size: s.size, slots_used: s.slots_used, capacity: s.capacity, tombstones: s.tombstones, dimensions: s.dimensions, metric: s.metric, m: s.m, max_level: s.max_level },
    results,
    batch,
  };
}

function assertSameImage(actual: ReturnType<typeof image>, expected: ReturnType<typeof image>, what: string) {
  assertEquals(actual.keys, expected.keys, `${what}: keys`);
  assertEquals(actual.size, expected.size, `${what}: size`);
  assertEquals(actual.stats, expected.stats, `${what}: stats`);
  for (let i = 0; i < expected.keys.length; i++) {
    assert(sameVector(actual.vectors[i], expected.vectors[i]), `${what}: vector of key ${expected.keys[i]} differs`);
  }
  assertEquals(actual.results, expected.results, `${what}: search results`);
  assertEquals(actual.batch, expected.batch, `${what}: batch search results`);
}

/** Checks an index against a key -> vector model, key by key. */
function assertHolds(index: Index, model: Map<bigint, Float32Array>, what: string) {
  const keys = index.keys();
  assertEquals(keys.length, model.size, `${what}: number of keys`);
  assertEquals(index.size, model.size, `${what}: size`);
  for (const key of keys) assert(model.has(key), `${what}: unexpected key ${key}`);
  for (const [key, vector] of model) assert(sameVector(index.get(key), vector), `${what}: key ${key} is missing or holds another vector`);
  assert(index.verify().ok, `${what}: verify failed`);
}

function timed<T>(fn: () => T): [T, number] {
  const start = performance.now();
  const value = fn();
  return [value, performance.now() - start];
}

for (const storage of ["f32", "f16", "rabitq"] as const) {
  test(`persist: a closed index (${storage} storage) reopens with identical keys, vectors, sizes and search results`, () => reopenIdentical(storage));
}

function reopenIdentical(storage: "f32" | "f16" | "rabitq") {
  const dir = tempDir();
  try {
    const path = `${dir}/index`;
    const d = 16;
    const n = 3000;
    const data = clustered(n + 200, d, 11);
    const queries = clustered(50, d, 12);
    const keys = BigUint64Array.from({ length: n }, (_, i) => BigInt(i) * 7n + 1n);
    let before;
    {
      using index = Index.open(path, { dimensions: d, storage });
      index.add(keys, data.subarray(0, n * d), { threads: 2 });
      for (let i = 0; i < 200; i++) index.add(keys[i * 13], data.subarray((n + i) * d, (n + i + 1) * d)); // upserts
      for (let i = 0; i < 300; i++) assert(index.remove(keys[i * 9 + 5]), "remove of a live key");
      before = image(index, queries);
      assert(before.size === n - 300, `size ${before.size}`);
    }
    const [fast, fastMs] = timed(() => Index.open(path));
    assertSameImage(image(fast, queries), before, "reopen");
    fast.close();
    const [full, fullMs] = timed(() => Index.open(path, { validate: "full" }));
    assertSameImage(image(full, queries), before, "reopen with full validation");
    full.close();
    const [readOnly, readOnlyMs] = timed(() => Index.open(path, { readOnly: true }));
    assertSameImage(image(readOnly, queries), before, "read-only reopen");
    assert(readOnly.verify().ok, "verify after reopen");
    readOnly.close();
    console.log(
      `persist: reopen of ${n} vectors (d=${d}, ${storage}, ${before.stats.slots_used} slots): ${fastMs.toFixed(2)} ms fast, ` +
        `${fullMs.toFixed(2)} ms full, ${readOnlyMs.toFixed(2)} ms read-only (${runtime})`,
    );
  } finally {
    removeDir(dir);
  }
}

test("persist: adds, upserts and removes after a reopen persist through the next reopen", () => {
  const dir = tempDir();
  try {
    const path = `${dir}/index`;
    const d = 12;
    const seed = seedFromEnv(5);
    const model = new Map<bigint, Float32Array>();
    let op = 0;
    const add = (index: Index, key: bigint) => {
      const v = seededVector(seed, op++, d);
      index.add(key, v);
      model.set(key, v);
    };
    {
      using index = Index.open(path, { dimensions: d, m: 8 });
      for (let k = 0n; k < 800n; k++) add(index, k);
    }
    for (let round = 0; round < 4; round++) {
      using index = Index.open(path, { dimensions: d });
      assertHolds(index, model, `reopen ${round}`);
      const r = rng(seed + round);
      for (let i = 0; i < 300; i++) add(index, BigInt(1000 * (round + 1) + i));
      const live = [...model.keys()];
      for (let i = 0; i < 100; i++) add(index, live[Math.floor(r() * live.length)]);
      for (let i = 0; i < 150; i++) {
        const key = live[Math.floor(r() * live.length)];
        assertEquals(index.remove(key), model.delete(key), `remove(${key})`);
      }
      assertHolds(index, model, `before close ${round}`);
    }
    using last = Index.open(path, { validate: "full" });
    assertHolds(last, model, "final reopen");
  } finally {
    removeDir(dir);
  }
});

test("persist: growth through many remaps persists every vector", () => {
  const dir = tempDir();
  try {
    const path = `${dir}/index`;
    const d = 8;
    const n = 20_000;
    const seed = 77;
    let remaps = 0;
    {
      using index = Index.open(path, { dimensions: d, m: 8, efConstruction: 64 });
      const capacity0 = index.capacity;
      for (let i = 0; i < n; i++) index.add(i, seededVector(seed, i, d));
      remaps = index.stats().remaps;
      assert(remaps >= Math.log2(n / capacity0) - 1, `${remaps} remaps growing from ${capacity0} to ${index.capacity}`);
    }
    const [index, ms] = timed(() => Index.open(path, { dimensions: d }));
    try {
      assert(index.capacity >= n, `capacity ${index.capacity}`);
      assertEquals(index.size, n, "size");
      for (let i = 0; i < n; i++) assert(sameVector(index.get(i), seededVector(seed, i, d)), `vector ${i}`);
      assert(index.verify().ok, "verify");
      let hits = 0;
      for (let i = 0; i < n; i += 200) if (index.search(seededVector(seed, i, d), 1).keys[0] === BigInt(i)) hits++;
      assert(hits >= 95, `self-search ${hits}/100`);
      console.log(`persist: ${n} vectors grown through ${remaps} remaps reopen in ${ms.toFixed(2)} ms (${runtime})`);
    } finally {
      index.close();
    }
  } finally {
    removeDir(dir);
  }
});

test("persist: a FIFO at the path or at a companion is refused at once, never a hang (read-only too)", () => {
  const dir = tempDir();
  try {
    const path = `${dir}/fifo`;
    assertEquals(runSync(["mkfifo", path]).code, 0, "mkfifo");
    // The old open blocked forever in open(2) on a FIFO without a writer.
    assertThrows(() => Index.open(path, { readOnly: true }), InvalidArgumentError);
    assertThrows(() => Index.open(path, { create: false }), InvalidArgumentError);
    removeFile(path);
    const index = `${dir}/index`;
    Index.open(index, { dimensions: 4 }).close();
    for (const suffix of [".graph", ".wal"]) {
      const moved = `${dir}/moved${suffix}`;
      renameSync(index + suffix, moved);
      assertEquals(runSync(["mkfifo", index + suffix]).code, 0, "mkfifo");
      assertThrows(() => Index.open(index, { readOnly: true }), InvalidArgumentError);
      removeFile(index + suffix);
      renameSync(moved, index + suffix);
    }
    Index.open(index, { readOnly: true }).close();
  } finally {
    removeDir(dir);
  }
});

test("persist: opening a missing index", () => {
  const dir = tempDir();
  try {
    const path = `${dir}/absent`;
    // Not "no such key": the error says the index does not exist (issue 9 item 13).
    const missing = assertThrows(() => Index.open(path, { create: false, dimensions: 4 }), NoIndexError, "NO_INDEX");
    assert(missing.message.includes("no index exists"), missing.message);
    assertThrows(() => Index.open(path, { readOnly: true }), NoIndexError, "NO_INDEX");
    // create defaults to true, but creating needs the dimensions.
    assertThrows(() => Index.open(path), InvalidDimensionsError);
    for (const s of indexFiles()) assert(!exists(path + s), `a failed open left ${path + s} behind`);
    // A data file without its graph file is damage, not absence.
    Index.open(path, { dimensions: 4 }).close();
    removeFile(`${path}.graph`);
    assertThrows(() => Index.open(path, { create: false }), CorruptIndexError);
    assertThrows(() => Index.open(path), CorruptIndexError);
  } finally {
    removeDir(dir);
  }
});

test("persist: reopening with other dimensions is DimensionMismatchError, with another metric InvalidArgumentError", () => {
  const dir = tempDir();
  try {
    const path = `${dir}/index`;
    {
      using index = Index.open(path, { dimensions: 6, metric: "cosine" });
      index.add(1, [1, 2, 3, 4, 5, 6]);
    }
    assertThrows(() => Index.open(path, { dimensions: 7 }), DimensionMismatchError);
    assertThrows(() => Index.open(path, { dimensions: 5, readOnly: true }), DimensionMismatchError);
    using same = Index.open(path, { dimensions: 6 });
    assertEquals(same.size, 1);
    same.close();
    // An explicit, different metric is refused rather than silently ignored or re-interpreted.
    assertThrows(() => Index.open(path, { metric: "l2" }), InvalidArgumentError);
    assertThrows(() => Index.open(path, { metric: "ip", readOnly: true }), InvalidArgumentError);
    using explicit = Index.open(path, { metric: "cosine" });
    assertEquals(explicit.stats().metric, 2, "metric");
  } finally {
    removeDir(dir);
  }
});

/** Runs lock_child.ts; returns its first line (`ok <size>`, `error <class> <code>`). */
async function tryOpenElsewhere(path: string, mode: "write" | "read"): Promise<string> {
  const proc = spawnRuntime(lockChild, [path, mode]);
  const line = await proc.nextLine();
  while ((await proc.nextLine()) !== null) { /* drain */ }
  await proc.exited;
  return line ?? `no output: ${await proc.stderr}`;
}

test("persist: a second writer in another process gets LockedError; read-only opens share", async () => {
  const dir = tempDir();
  try {
    const path = `${dir}/index`;
    {
      using index = Index.open(path, { dimensions: 4 });
      index.add(1, [1, 0, 0, 0]);
      index.add(2, [0, 1, 0, 0]);
      assertEquals(await tryOpenElsewhere(path, "write"), "error LockedError LOCKED", "a writer in another process while we write");
      assertEquals(await tryOpenElsewhere(path, "read"), "error LockedError LOCKED", "a reader in another process while we write");
      // The same process is no exception: a second writer handle is refused as well.
      assertThrows(() => Index.open(path), LockedError, "LOCKED");
    }
    {
      using reader = Index.open(path, { readOnly: true });
      using reader2 = Index.open(path, { readOnly: true });
      assertEquals(reader.size + reader2.size, 4);
      assertEquals(await tryOpenElsewhere(path, "read"), "ok 2", "a reader in another process beside our readers");
      assertEquals(await tryOpenElsewhere(path, "write"), "error LockedError LOCKED", "a writer in another process beside our readers");
      assertThrows(() => Index.open(path), LockedError, "LOCKED");
    }
    // A writer in another process holds the lock until it dies, even by SIGKILL.
    const holder = spawnRuntime(lockChild, [path, "write", "hold"]);
    assertEquals(await holder.nextLine(), "ok 2");
    assertEquals(await holder.nextLine(), "holding");
    assertThrows(() => Index.open(path), LockedError, "LOCKED");
    assertThrows(() => Index.open(path, { readOnly: true }), LockedError, "LOCKED");
    holder.kill("SIGKILL");
    await holder.exited;
    using after = Index.open(path);
    assertEquals(after.size, 2);
  } finally {
    killChildren();
    removeDir(dir);
  }
});

test("persist: a read-only index rejects writes with ReadOnlyError and still reads", () => {
  const dir = tempDir();
  try {
    const path = `${dir}/index`;
    {
      using index = Index.open(path, { dimensions: 3 });
      index.add(1, [1, 0, 0]);
      index.add(2, [0, 1, 0]);
    }
    using index = Index.open(path, { readOnly: true });
    assertThrows(() => index.add(3, [0, 0, 1]), ReadOnlyError, "READ_ONLY");
    assertThrows(() => index.add([4n, 5n], new Float32Array(6)), ReadOnlyError, "READ_ONLY");
    assertThrows(() => index.remove(1), ReadOnlyError, "READ_ONLY");
    assertThrows(() => index.reserve(1000), ReadOnlyError, "READ_ONLY");
    assertEquals(index.size, 2);
    assertEquals(index.search([1, 0, 0], 1).keys, new BigUint64Array([1n]));
    assertEquals(index.get(2), new Float32Array([0, 1, 0]));
    assert(index.verify().ok, "verify");
    // Nothing to write: checkpoint and sync succeed without touching the files.
    index.checkpoint();
    index.sync();
  } finally {
    removeDir(dir);
  }
});

test("persist: a read-only open of a crashed index refuses to serve it without its WAL; a writer recovers it", async () => {
  const dir = tempDir();
  try {
    const path = `${dir}/index`;
    const proc = spawnRuntime(new URL("./fixtures/make_dirty.ts", import.meta.url).pathname, [path, "3", "8"]);
    while ((await proc.nextLine()) !== null) { /* drain */ }
    assertEquals((await proc.exited).signal, "SIGKILL");
    // The files hold 290 keys + 20 upserts - 20 removes, most of them only in the WAL's care.
    const error = assertThrows(() => Index.open(path, { readOnly: true }), QuiverError);
    assert(error instanceof ReadOnlyError, `expected ReadOnlyError, got ${error.name}`);
    {
      using writer = Index.open(path);
      assertEquals(writer.size, 270, "size after recovery");
      assert(writer.verify().ok, "verify after recovery");
      assert(sameVector(writer.get(3), seededVector(3, 1000, 8)), "an upsert logged before the crash");
      assert(!writer.has(5), "a remove logged before the crash");
    }
    using reader = Index.open(path, { readOnly: true });
    assertEquals(reader.size, 270, "read-only open after recovery");
  } finally {
    killChildren();
    removeDir(dir);
  }
});

test("persist: a backup aimed at an existing index throws AlreadyExistsError (not LockedError) and leaves that index whole", () => {
  const dir = tempDir();
  try {
    const d = 8;
    const data = clustered(300, d, 4);
    const target = `${dir}/target`;
    {
      using existing = Index.open(target, { dimensions: d });
      for (let i = 0; i < 300; i++) existing.add(i, data.subarray(i * d, (i + 1) * d));
    }
    const sizes = indexFiles().map((s) => (exists(target + s) ? fileSize(target + s) : -1));
    using source = new Index({ dimensions: d });
    source.add(1, data.subarray(0, d));
    assertThrows(() => source.backup(target), AlreadyExistsError, "ALREADY_EXISTS");
    assertEquals(indexFiles().map((s) => (exists(target + s) ? fileSize(target + s) : -1)), sizes, "file sizes after the refused backup");
    using reopened = Index.open(target, { validate: "full" });
    assertEquals(reopened.size, 300);
    assert(reopened.verify().ok, "verify after the refused backup");
    for (let i = 0; i < 300; i += 37) assert(sameVector(reopened.get(i), data.subarray(i * d, (i + 1) * d)), `key ${i}`);
  } finally {
    removeDir(dir);
  }
});

/**
 * A real format 2 file: an i8 index (8 dimensions, M = 4, l2, 700 vectors) written by the
 * library before i8 records were packed (tests/fixtures/format2, gzipped). Its codes are
 * line-aligned with the terms in the line before; the open must read them so (verify re-encodes
 * every exact vector and compares the record's bytes), answer from them, take new writes in the
 * same layout, and leave the file format 2, so that the older library still opens it.
 */
test("persist: a format 2 i8 index (aligned codes, written before packing) opens, answers, grows and stays format 2", async () => {
  const { gunzipSync } = await import("node:zlib");
  const dir = tempDir("quiver-format2-");
  try {
    const path = `${dir}/l8`;
    for (const suffix of ["", ".graph", ".upper", ".vectors", ".records", ".wal"]) {
      const packed = readBytes(new URL(`./fixtures/format2/i8-d8-l8${suffix}.gz`, import.meta.url).pathname);
      writeBytes(path + suffix, new Uint8Array(gunzipSync(packed)));
    }
    const version = () => {
      const data = readBytes(path);
      return Number(headerValue(data, "version", loadFormat().headerSlots[activeHeaderSlot(data)!]));
    };
    assertEquals(version(), 2);
    {
      using index = Index.open(path, { dimensions: 8, readOnly: true, validate: "full" });
      assertEquals(index.size, 700);
      const report = index.verify();
      assert(report.ok && Number(report.vector_mismatches) === 0, `verify: ${JSON.stringify(report, (_k, v) => typeof v === "bigint" ? Number(v) : v)}`);
    }
    using index = Index.open(path, { dimensions: 8 });
    const keys = index.keys();
    let hits = 0;
    for (const key of keys) {
      const found = index.search(index.get(key)!, 1, { ef: 64 });
      if (found.keys[0] === key && found.distances[0] === 0) hits++;
    }
    assert(hits >= 0.95 * keys.length, `self-search found ${hits}/${keys.length}`);
    const r = rng(5);
    for (let i = 0; i < 300; i++) index.add(1_000_000n + BigInt(i), Float32Array.from({ length: 8 }, () => r() * 2 - 1));
    index.checkpoint();
    assert(index.verify().ok, "verify after 300 adds into the aligned records");
    assertEquals(index.size, 1000);
    index.close();
    assertEquals(version(), 2);
  } finally {
    removeDir(dir);
  }
});
