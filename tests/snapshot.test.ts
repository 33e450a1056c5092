/**
 * Snapshots: a snapshot sees exactly the state at the moment it was taken (size, keys, get, has,
 * search), whatever inserts, removes, upserts, re-adds and remaps (forced, growth, reserve)
 * happen afterwards. Checked key by key and vector by vector against a model of that moment.
 * Seeded: QUIVER_SEED=<seed> replays a failure.
 */
import { ClosedError, Index, type Snapshot } from "../mod.ts";
import { assert, assertEquals, assertThrows, bitsOf, rng, seedFromEnv, test } from "./harness.ts";

const d = 8;
const seed = seedFromEnv(777);
console.log(`snapshot.test.ts seed=${seed} (replay with QUIVER_SEED=${seed})`);

type Model = Map<bigint, Float32Array>;

function randomVector(random: () => number): Float32Array {
  const v = new Float32Array(d);
  for (let j = 0; j < d; j++) v[j] = random() * 2 - 1;
  return v;
}

function l2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let j = 0; j < d; j++) s += (a[j] - b[j]) ** 2;
  return s;
}

const sortKeys = (keys: Iterable<bigint>) => [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

/**
 * Asserts `reader` (a snapshot or the live index) shows exactly `model`: size, keys, has and get
 * of every key (and none of `absent`), and searches that only return model keys with the model's
 * distances, each model vector finding its own key first.
 */
function assertShows(reader: Index | Snapshot, model: Model, absent: Iterable<bigint>, what: string, random: () => number): void {
  assertEquals(reader.size, model.size, `${what}: size`);
  assertEquals(sortKeys(reader.keys()), sortKeys(model.keys()), `${what}: keys()`);
  for (const [key, vector] of model) {
    assert(reader.has(key), `${what}: has(${key}) is false`);
    const got = reader.get(key);
    assert(got !== undefined, `${what}: get(${key}) is undefined`);
    assertEquals(bitsOf(got), bitsOf(vector), `${what}: get(${key})`);
  }
  for (const key of absent) {
    if (model.has(key)) continue;
    assertEquals(reader.has(key), false, `${what}: has(${key}) of a key it must not see`);
    assertEquals(reader.get(key), undefined, `${what}: get(${key}) of a key it must not see`);
  }
  if (model.size === 0) {
    assertEquals(reader.search(randomVector(random), 3).keys.length, 0, `${what}: search of an empty state`);
    return;
  }
  // Search from 20 model vectors (each must find itself) with a beam wider than the index.
  const entries = [...model.entries()];
  const k = Math.min(10, model.size);
  const queries: [bigint, Float32Array][] = [];
  for (let i = 0; i < 20; i++) queries.push(entries[Math.floor(random() * entries.length)]);
  const flat = new Float32Array(queries.length * d);
  queries.forEach(([, v], i) => flat.set(v, i * d));
  const batch = reader.searchBatch(flat, k, { ef: 1024 });
  for (const [i, [key, query]] of queries.entries()) {
    const r = reader.search(query, k, { ef: 1024 });
    assertEquals(r.keys.length, k, `${what}: search found ${r.keys.length} of ${k}`);
    assertEquals(r.keys[0], key, `${what}: the vector of ${key} did not find itself first`);
    assertEquals(r.distances[0], 0);
    for (let j = 0; j < r.keys.length; j++) {
      const stored = model.get(r.keys[j]);
      assert(stored !== undefined, `${what}: search returned ${r.keys[j]}, which this state does not hold`);
      assert(Math.abs(r.distances[j] - l2(query, stored)) <= 1e-5, `${what}: distance of ${r.keys[j]} is not its stored vector's`);
      if (j > 0) assert(r.distances[j - 1] <= r.distances[j], `${what}: not sorted`);
    }
    assertEquals(batch.keys.subarray(i * k, i * k + k), r.keys, `${what}: searchBatch differs from search`);
  }
}

test("snapshot: sees exactly its moment through inserts, removes, upserts, re-adds and remaps", () => {
  const random = rng(seed);
  using index = new Index({ dimensions: d, capacity: 64 });
  const live: Model = new Map();
  const everAdded = new Set<bigint>();
  let nextKey = 0n;
  const insert = () => {
    const key = nextKey++;
    const v = randomVector(random);
    index.add(key, v);
    live.set(key, v);
    everAdded.add(key);
  };
  const pick = (): bigint => [...live.keys()][Math.floor(random() * live.size)];
  for (let i = 0; i < 200; i++) insert();
  // Some keys are removed before the snapshot: it must not see them even when they come back.
  const removedBefore: bigint[] = [];
  for (let i = 0; i < 20; i++) {
    const key = pick();
    assertEquals(index.remove(key), true);
    live.delete(key);
    removedBefore.push(key);
  }

  const snapshots: { snapshot: Snapshot; model: Model; at: string }[] = [];
  const take = (at: string) => snapshots.push({ snapshot: index.snapshot(), model: new Map(live), at });
  take("first");
  const remapsAtStart = index.stats().remaps;

  // Re-add the keys removed before the snapshot.
  for (const key of removedBefore.slice(0, 10)) {
    const v = randomVector(random);
    index.add(key, v);
    live.set(key, v);
  }
  for (let round = 0; round < 6; round++) {
    for (let op = 0; op < 60; op++) {
      const r = random();
      if (r < 0.4) insert();
      else if (r < 0.65) {
        const key = pick();
        assertEquals(index.remove(key), true);
        live.delete(key);
      } else if (r < 0.9) {
        const key = pick(); // upsert: a new vector for a live key
        const v = randomVector(random);
        index.add(key, v);
        live.set(key, v);
      } else {
        // Remove and re-add (a chain of slots for one key).
        const key = pick();
        index.remove(key);
        const v = randomVector(random);
        index.add(key, v);
        live.set(key, v);
      }
    }
    if (round === 1) index.remap();
    if (round === 2) index.reserve(index.capacity * 2);
    if (round === 3) {
      // A batch that outgrows the storage.
      const count = index.capacity - index.stats().slots_used + 10;
      const keys = Array.from({ length: count }, () => nextKey++);
      const flat = new Float32Array(count * d);
      keys.forEach((key, i) => {
        const v = randomVector(random);
        flat.set(v, i * d);
        live.set(key, v);
        everAdded.add(key);
      });
      index.add(keys, flat, { threads: 2 });
    }
    if (round % 2 === 0) take(`after round ${round}`);
    for (const { snapshot, model, at } of snapshots) assertShows(snapshot, model, everAdded, `snapshot "${at}" (round ${round})`, random);
    assertShows(index, live, everAdded, `live index (round ${round})`, random);
  }
  assert(index.stats().remaps >= remapsAtStart + 3, "the sequence did not remap");
  assertEquals(index.stats().snapshots_live, snapshots.length);
  for (const { snapshot } of snapshots) snapshot.release();
  assertEquals(index.stats().snapshots_live, 0);
  assertEquals(index.verify().ok, true);
});

test("snapshot: search on a snapshot never returns keys added after it, and does return keys removed after it", () => {
  const random = rng(seed ^ 0xabc);
  using index = new Index({ dimensions: d });
  const before: Model = new Map();
  for (let i = 0n; i < 100n; i++) {
    const v = randomVector(random);
    index.add(i, v);
    before.set(i, v);
  }
  using snapshot = index.snapshot();
  // Remove every key that was there, and add as many new ones right on top of the old vectors.
  for (const [key, v] of before) {
    assertEquals(index.remove(key), true);
    index.add(key + 1000n, v);
  }
  index.remap();
  assertEquals(index.size, 100);
  assertEquals(snapshot.size, 100);
  for (const [key, v] of before) {
    const r = snapshot.search(v, 5, { ef: 256 });
    assertEquals(r.keys[0], key, `snapshot search at the vector of removed key ${key}`);
    for (const found of r.keys) assert(found < 1000n, `snapshot search returned ${found}, added after the snapshot`);
    const now = index.search(v, 5, { ef: 256 });
    assertEquals(now.keys[0], key + 1000n);
    for (const found of now.keys) assert(found >= 1000n, `live search returned removed key ${found}`);
  }
  const all = snapshot.search(randomVector(random), 100, { ef: 256 });
  assertEquals(sortKeys(all.keys), sortKeys(before.keys()));
});

test("snapshot: release is idempotent and use after release throws ClosedError", () => {
  using index = new Index({ dimensions: d });
  index.add(1, new Float32Array(d).fill(1));
  const snapshot = index.snapshot();
  assertEquals(index.stats().snapshots_live, 1);
  assertEquals(snapshot.size, 1);
  snapshot.release();
  assertEquals(index.stats().snapshots_live, 0);
  snapshot.release();
  snapshot[Symbol.dispose]();
  assertEquals(index.stats().snapshots_live, 0);
  const calls: [string, () => unknown][] = [
    ["size", () => snapshot.size],
    ["keys", () => snapshot.keys()],
    ["get", () => snapshot.get(1)],
    ["has", () => snapshot.has(1)],
    ["search", () => snapshot.search(new Float32Array(d).fill(1), 1)],
    ["searchBatch", () => snapshot.searchBatch(new Float32Array(d).fill(1), 1)],
    ["dimensions", () => snapshot.dimensions],
  ];
  for (const [name, call] of calls) {
    try {
      assertThrows(call, ClosedError, "CLOSED");
    } catch (error) {
      throw new Error(`${name} after release: ${(error as Error).message}`);
    }
  }
  // `using` releases at scope end.
  {
    using scoped = index.snapshot();
    assertEquals(scoped.size, 1);
    assertEquals(index.stats().snapshots_live, 1);
  }
  assertEquals(index.stats().snapshots_live, 0);
  // The index is unaffected.
  assertEquals(index.size, 1);
  assertEquals(index.search(new Float32Array(d).fill(1), 1).keys, new BigUint64Array([1n]));
});

test("snapshot: closing the index invalidates its snapshots", () => {
  const index = new Index({ dimensions: d });
  index.add(1, new Float32Array(d).fill(1));
  const a = index.snapshot();
  const b = index.snapshot();
  b.release();
  index.close();
  for (const snapshot of [a, b]) {
    assertThrows(() => snapshot.size, ClosedError, "CLOSED");
    assertThrows(() => snapshot.get(1), ClosedError, "CLOSED");
    assertThrows(() => snapshot.search(new Float32Array(d).fill(1), 1), ClosedError, "CLOSED");
    snapshot.release(); // a no-op, not a throw
    snapshot[Symbol.dispose]();
  }
  // A snapshot of a closed index cannot be taken either.
  assertThrows(() => index.snapshot(), ClosedError, "CLOSED");
});

test("snapshot: a snapshot held by one wrapper survives another wrapper's remaps and writes", () => {
  using index = new Index({ dimensions: d });
  using other = Index.attach(index.handle);
  const random = rng(seed ^ 0x77);
  const model: Model = new Map();
  for (let i = 0n; i < 50n; i++) {
    const v = randomVector(random);
    index.add(i, v);
    model.set(i, v);
  }
  using snapshot = index.snapshot();
  for (let i = 0n; i < 50n; i += 2n) other.remove(i);
  for (let i = 1n; i < 50n; i += 2n) other.add(i, randomVector(random));
  for (let i = 100n; i < 300n; i++) other.add(i, randomVector(random));
  for (let r = 0; r < 5; r++) other.remap();
  assertShows(snapshot, model, [100n, 200n, 299n], "snapshot after another wrapper's writes", random);
  assertEquals(index.size, 25 + 200);
});
