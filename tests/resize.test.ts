/**
 * Family 2: resize and snapshot consistency. The storage is remapped many times (growth from a
 * small capacity, and explicit `index.remap()`), while readers on Workers and on the main thread
 * hold zero-copy views and snapshots and search. Every stored vector is self-checking, so a torn,
 * stale or foreign read is counted (and must be 0); stale views must throw StaleGuardError; a
 * snapshot's contents must stay bit-identical across every remap.
 *
 * Normal mode takes a few seconds; QUIVER_SOAK=1 runs thousands of remap rounds.
 */
import { Index, StaleGuardError } from "../mod.ts";
import { assert, assertEquals, assertHealthy, assertThrows, Crew, type CrewMember, elapsed, envFlag, seedFromEnv, test, turn } from "./harness.ts";
import { Board, boardBytes, closeTo, decodeVector, l2sq, State, vectorFor, W } from "./fixtures/worker_lib.ts";
import { type ReaderCounts, type ReaderParams, ResizeReader } from "./fixtures/worker_resize_reader.ts";

const soak = !!envFlag("QUIVER_SOAK");
const seed = seedFromEnv(20251126);
const timeoutMs = soak ? 30 * 60_000 : 60_000;
const d = 16;
const options = { dimensions: d, m: 8, efConstruction: 48, ef: 64, capacity: 64 };
const script = new URL("./fixtures/worker_resize.ts", import.meta.url);

console.log(`[resize] seed ${seed} (QUIVER_SEED=${seed} replays)${soak ? ", soak mode" : ""}`);

interface Contents {
  keys: BigUint64Array;
  bytes: Uint8Array;
  size: number;
}

/** A snapshot's whole contents: sorted keys and the bytes of every vector, in key order. */
function contents(snapshot: { keys(): BigUint64Array; get(key: bigint): Float32Array | undefined; size: number }): Contents {
  const keys = snapshot.keys().slice().sort();
  const floats = new Float32Array(keys.length * d);
  keys.forEach((key, i) => {
    const got = snapshot.get(key);
    assert(got !== undefined, `snapshot lists ${key} but get finds nothing`);
    floats.set(got, i * d);
  });
  return { keys, bytes: new Uint8Array(floats.buffer), size: snapshot.size };
}

function assertSameContents(actual: Contents, expected: Contents, what: string): void {
  assertEquals(actual.size, expected.size, `${what}: size`);
  assertEquals(actual.keys.length, expected.keys.length, `${what}: number of keys`);
  for (let i = 0; i < expected.keys.length; i++) {
    if (actual.keys[i] !== expected.keys[i]) throw new Error(`${what}: key ${i} is ${actual.keys[i]}, was ${expected.keys[i]}`);
  }
  for (let i = 0; i < expected.bytes.length; i++) {
    if (actual.bytes[i] !== expected.bytes[i]) {
      throw new Error(`${what}: the vector of key ${expected.keys[Math.floor(i / (4 * d))]} differs at byte ${i % (4 * d)}`);
    }
  }
}

function assertStored(index: Index, key: number, version: number): void {
  const got = index.get(key);
  assert(got !== undefined, `get(${key}) found nothing (expected version ${version})`);
  const expected = vectorFor(key, version, d);
  for (let j = 0; j < d; j++) {
    assert(Object.is(got[j], expected[j]), `get(${key})[${j}] = ${got[j]}, expected ${expected[j]} (version ${version}; got ${JSON.stringify(decodeVector(got, d))})`);
  }
}

test("resize: canaries: the reader counts stale, torn and foreign reads", () => {
  const index = new Index(options);
  try {
    const board = new Board(new SharedArrayBuffer(boardBytes(1)), 0);
    const committed = new Int32Array(new SharedArrayBuffer(8));
    const issued = new Int32Array(new SharedArrayBuffer(8));
    const reader = () => new ResizeReader(index, board, committed, issued, { d, seed, held: 2, keyHi: 2, preloaded: 1 });
    // Stale: the books say version 1 of key 1 was committed, the index holds version 0.
    index.add(1, vectorFor(1, 0, d));
    committed[1] = 2;
    issued[1] = 2;
    const stale = reader();
    stale.start();
    stale.step();
    const s = stale.finish();
    assert(s.stale > 0 && s.torn === 0, `stale canary: ${JSON.stringify(s)}`);
    // Torn: key 1 holds version 1 with one component off by one ulp.
    const torn = vectorFor(1, 1, d);
    new Uint32Array(torn.buffer)[4] ^= 1;
    index.add(1, torn);
    const t = reader();
    t.start();
    t.step();
    const tc = t.finish();
    assert(tc.torn > 0, `torn canary: ${JSON.stringify(tc)}`);
    // Foreign: key 1 holds key 2's vector.
    index.add(1, vectorFor(2, 1, d));
    const f = reader();
    f.start();
    f.step();
    assert(f.finish().torn > 0, "foreign-vector canary");
  } finally {
    index.close();
  }
});

test("resize: remaps and growth on one thread keep snapshot bits, reject stale views and leave one mapping", () => {
  const start = performance.now();
  const index = new Index(options);
  try {
    const versions = new Map<number, number>();
    for (let key = 1; key <= 500; key++) {
      index.add(key, vectorFor(key, 0, d));
      versions.set(key, 0);
    }
    const snapshot = index.snapshot();
    const baseline = contents(snapshot);
    assertEquals(baseline.size, 500, "snapshot size");
    const remapsBefore = index.stats().remaps;
    const rounds = soak ? 2_000 : 150;
    let views = Array.from({ length: 8 }, (_, i) => ({ key: 1 + i * 50, view: index.view(1 + i * 50) }));
    let next = 501;
    let staleChecks = 0;
    for (let round = 0; round < rounds; round++) {
      const epochBefore = index.epoch;
      if (round % 3 === 2) {
        // Growth: enough new keys to pass the next power of two now and then.
        for (let i = 0; i < 40; i++, next++) {
          index.add(next, vectorFor(next, 0, d));
          versions.set(next, 0);
        }
        const key = 1 + (round % 500);
        const version = versions.get(key)! + 1;
        index.add(key, vectorFor(key, version, d));
        versions.set(key, version);
      } else {
        index.remap();
        assertEquals(index.epoch, epochBefore + 1n, `epoch after explicit remap ${round}`);
      }
      if (index.epoch === epochBefore) continue;
      for (const { key, view } of views) {
        assert(!view.valid, `view(${key}) of epoch ${view.epoch} still valid in epoch ${index.epoch}`);
        assertThrows(() => view.array, StaleGuardError, "STALE_GUARD");
        staleChecks++;
        view[Symbol.dispose]();
      }
      views = views.map(({ key }) => {
        const view = index.view(key);
        const decoded = decodeVector(view.array, d);
        assert(decoded !== null && decoded.key === key && decoded.version === versions.get(key), `fresh view(${key}) reads ${JSON.stringify(decoded)}`);
        return { key, view };
      });
    }
    const remaps = index.stats().remaps - remapsBefore;
    assert(remaps >= (rounds * 2) / 3, `only ${remaps} remaps in ${rounds} rounds`);
    assertSameContents(contents(snapshot), baseline, "snapshot after the remaps");
    const q = vectorFor(7, 0, d);
    const r = snapshot.search(q, 10);
    for (let i = 0; i < r.keys.length; i++) {
      const key = Number(r.keys[i]);
      assert(key >= 1 && key <= 500, `snapshot search returned ${key}, added after the snapshot`);
      assert(closeTo(r.distances[i], l2sq(q, vectorFor(key, 0, d))), `snapshot search distance of ${key} is not its snapshot vector's`);
    }
    for (const [key, version] of versions) assertStored(index, key, version);
    assertEquals(index.size, versions.size, "size");
    snapshot.release();
    for (const { view } of views) view[Symbol.dispose]();
    const stats = index.stats();
    assertEquals(stats.guards_live, 0, "guards_live");
    assertEquals(stats.snapshots_live, 0, "snapshots_live");
    assertEquals(stats.mappings_live, 1, "mappings_live (old generations unmapped)");
    assertHealthy(index);
    console.log(`[resize] one thread: ${remaps} remaps (capacity 64 -> ${stats.capacity}), ${staleChecks} stale-view checks, snapshot of 500 keys bit-identical, ${elapsed(start)}`);
  } finally {
    index.close();
  }
}, timeoutMs);

test("resize: after reserve(n), adding up to n keys (singly or in batches) remaps nothing", () => {
  const n = soak ? 60_000 : 20_000;
  const index = new Index({ ...options, efConstruction: 16 });
  try {
    index.reserve(n);
    const remaps = index.stats().remaps;
    const epoch = index.epoch;
    let key = 1;
    // Half one at a time, half in batches of 8 on 2 native threads.
    for (; key <= n / 2; key++) index.add(key, vectorFor(key, 0, d));
    for (; key + 8 <= n + 1; key += 8) {
      const keys = new BigUint64Array(8);
      const vectors = new Float32Array(8 * d);
      for (let i = 0; i < 8; i++) {
        keys[i] = BigInt(key + i);
        vectorFor(key + i, 0, d, vectors, i * d);
      }
      index.add(keys, vectors, { threads: 2 });
      const moved = index.stats().remaps - remaps;
      assert(moved === 0, `the batch adding keys ${key}..${key + 7} remapped (${moved} remaps; ${index.size} keys after reserve(${n}), capacity ${index.capacity})`);
    }
    assertEquals(index.size, key - 1, "size");
    assertEquals(index.stats().remaps - remaps, 0, `remaps while adding ${key - 1} keys after reserve(${n})`);
    assertEquals(index.epoch, epoch, "epoch");
    assertHealthy(index);
  } finally {
    index.close();
  }
}, timeoutMs);

test("resize: readers on Workers and the main thread hold views and snapshots through many real remaps", async () => {
  const start = performance.now();
  const writers = 2;
  const workerReaders = soak ? 3 : 2;
  const rounds = soak ? 1_000 : 100;
  const preloaded = 2_000;
  const newKeys = soak ? 20_000 : 4_000;
  const keyHi = 1 + preloaded + newKeys;
  const index = new Index(options);
  const committed = new Int32Array(new SharedArrayBuffer(keyHi * 4));
  const issued = new Int32Array(new SharedArrayBuffer(keyHi * 4));
  // Preload from this thread (growth remaps, before any reader exists).
  const column = new BigUint64Array(preloaded);
  const vectors = new Float32Array(preloaded * d);
  for (let key = 1; key <= preloaded; key++) {
    column[key - 1] = BigInt(key);
    vectorFor(key, 0, d, vectors, (key - 1) * d);
    committed[key] = 1;
    issued[key] = 1;
  }
  index.add(column, vectors);
  // The snapshot every remap must leave untouched.
  const snapshot = index.snapshot();
  const baseline = contents(snapshot);

  const readerParams = (i: number): ReaderParams => ({ d, seed: seed + 10 + i, held: 8, keyHi, preloaded });
  const members: CrewMember[] = [];
  for (let w = 0; w < writers; w++) {
    members.push({
      name: `writer ${w}`, script, role: "writer",
      params: { d, wid: w, writers, preloaded, newLo: preloaded + 1, newHi: keyHi, upserts: soak ? 50_000 : 3_000, perRound: 40, seed: seed + 100 + w },
    });
  }
  const readerSlots: number[] = [];
  for (let i = 0; i < workerReaders; i++) {
    readerSlots.push(members.length);
    members.push({ name: `reader ${i}`, script, role: "reader", params: readerParams(i) });
  }
  const remapperSlot = members.length;
  readerSlots.push(remapperSlot + 1); // the main thread's board slot comes after every Worker
  members.push({ name: "remapper", script, role: "remapper", params: { rounds, readers: readerSlots } });

  const crew = await Crew.start({ handle: index.handle, members, main: ["main reader"], shared: { committed: committed.buffer as SharedArrayBuffer, issued: issued.buffer as SharedArrayBuffer } });
  let failure: unknown;
  crew.failure.catch((error) => (failure = error));
  try {
    await crew.arrived();
    crew.set(W.go);
    const board = crew.mainBoard("main reader");
    const main = new ResizeReader(index, board, committed, issued, readerParams(99));
    board.setState(State.running);
    main.start();
    main.step();
    board.setState(State.idle);
    for (let i = 0; i < workerReaders; i++) await crew.signal(`reader ${i}`, "reading");

    // Every reader is reading: count the remaps from here until before they stop.
    const remapsBefore = index.stats().remaps;
    const epochBefore = index.epoch;
    crew.set(W.user3, 1);
    let writing = true;
    const writersDone = Promise.all([...Array(writers).keys()].map((w) => crew.result<{ added: number; upserts: number }>(`writer ${w}`)));
    const remapperDone = crew.result<{ rounds: number; epochs: number }>("remapper");
    Promise.all([writersDone, remapperDone]).then(() => (writing = false), () => {});
    board.setState(State.running);
    while (writing) {
      if (failure) throw failure;
      for (let i = 0; i < 4; i++) main.step();
      await turn();
    }
    const remapsWhileReading = index.stats().remaps - remapsBefore;
    const epochsWhileReading = Number(index.epoch - epochBefore);
    const written = await writersDone;
    const remapped = await remapperDone;
    crew.stop();
    const mainCounts = main.finish();
    board.setState(State.done);
    const counts: Record<string, ReaderCounts> = { "main reader": mainCounts };
    for (let i = 0; i < workerReaders; i++) counts[`reader ${i}`] = await crew.result<ReaderCounts>(`reader ${i}`);

    // Remaps happened while every reader was active, and each reader saw them all.
    assertEquals(remapped.rounds, rounds, "explicit remap rounds");
    assert(remapsWhileReading >= 50, `only ${remapsWhileReading} remaps while readers were active`);
    assert(remapsWhileReading >= rounds, `${remapsWhileReading} remaps while reading, fewer than the ${rounds} explicit ones`);
    for (const [name, c] of Object.entries(counts)) {
      assert(c.problems.length === 0, `${name}: ${c.torn} torn, ${c.stale} stale, ${c.future} future, ${c.mismatches} other bad reads:\n  ${c.problems.join("\n  ")}`);
      assertEquals([c.torn, c.stale, c.future, c.mismatches], [0, 0, 0, 0], `${name}: torn, stale, future, other bad reads`);
      assertEquals(c.rounds, rounds, `${name}: remap rounds acknowledged`);
      assert(c.epochMoves >= rounds, `${name}: saw the epoch move ${c.epochMoves} times in ${rounds} rounds`);
      assert(c.staleChecks >= 8 * rounds, `${name}: ${c.staleChecks} stale views rejected, expected at least ${8 * rounds}`);
    }

    // The snapshot taken before it all is bit-identical.
    assertSameContents(contents(snapshot), baseline, "the preload snapshot after every remap");
    snapshot.release();

    // The live state is exactly what the writers committed.
    let live = 0;
    for (let key = 1; key < keyHi; key++) {
      const c = committed[key];
      if (c === 0) {
        assert(index.get(key) === undefined, `get(${key}) of a key nobody added`);
        continue;
      }
      live++;
      assertStored(index, key, c - 1);
    }
    assertEquals(index.size, live, "size");
    const added = written.reduce((s, w) => s + w.added, 0);
    const upserts = written.reduce((s, w) => s + w.upserts, 0);
    assertEquals(added, newKeys, "new keys added");
    const stats = index.stats();
    assertEquals(stats.slots_used, preloaded + added + upserts, "slots_used: one slot per write");
    assertEquals(stats.guards_live, 0, "guards_live after every view was disposed");
    assertEquals(stats.snapshots_live, 0, "snapshots_live after every snapshot was released");
    assertEquals(stats.mappings_live, 1, "mappings_live: every old generation unmapped");
    assertHealthy(index);

    const sum = (f: (c: ReaderCounts) => number) => Object.values(counts).reduce((s, c) => s + f(c), 0);
    console.log(`[resize] ${remapsWhileReading} remaps while ${workerReaders + 1} readers were active (${remapped.rounds} explicit rounds, ${remapsWhileReading - remapped.rounds} by growth; epoch +${epochsWhileReading}; capacity 64 -> ${stats.capacity}); writers: ${added} adds + ${upserts} upserts; readers: ${sum((c) => c.gets)} gets, ${sum((c) => c.views)} views (${sum((c) => c.viewRaces)} raced a remap), ${sum((c) => c.searches)} searches, ${sum((c) => c.snapshotsTaken)} snapshots (${sum((c) => c.snapshotCompares)} re-reads, ${sum((c) => c.snapshotSearches)} searches), ${sum((c) => c.staleChecks)} stale views rejected, ${sum((c) => c.freshViews)} fresh views; torn/stale/future/other = ${sum((c) => c.torn)}/${sum((c) => c.stale)}/${sum((c) => c.future)}/${sum((c) => c.mismatches)}; ${elapsed(start)}`);
  } finally {
    crew.dispose();
    index.close();
  }
}, timeoutMs);
