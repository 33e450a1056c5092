/**
 * Family 1: one index used from many Workers at once (Bun Workers under Bun, Deno Workers under
 * Deno), each attached with `Index.attach(index.handle)`. Every spec asserts exact
 * post-conditions (sizes, key sets, stored bits, recall, the integrity walk and the safety
 * counters), and the watchdog fails it, naming the Worker and its call, if progress stops.
 *
 * Normal mode takes a few seconds per spec; QUIVER_SOAK=1 runs bigger, longer versions.
 * QUIVER_SEED=<n> replays a run (the seed is printed).
 */
import { ClosedError, Index, InvalidHandleError } from "../mod.ts";
import { assert, assertEquals, assertHealthy, assertThrows, Crew, type CrewMember, elapsed, envFlag, seedFromEnv, test } from "./harness.ts";
import { closeTo, decodeVector, l2sq, max_key, resultProblem, validUpsertVersion, vectorFor, W } from "./fixtures/worker_lib.ts";

const soak = !!envFlag("QUIVER_SOAK");
const seed = seedFromEnv(20251125);
const timeoutMs = soak ? 30 * 60_000 : 60_000;
const d = 16;
const options = { dimensions: d, m: 8, efConstruction: 64, ef: 64 };
const script = new URL("./fixtures/worker_ops.ts", import.meta.url);

console.log(`[workers] seed ${seed} (QUIVER_SEED=${seed} replays)${soak ? ", soak mode" : ""}`);

function books(): Record<string, SharedArrayBuffer> {
  const make = () => new SharedArrayBuffer(max_key * 4);
  return { inserting: make(), inserted: make(), removing: make(), removed: make() };
}

function int32(shared: Record<string, SharedArrayBuffer>, name: string): Int32Array {
  return new Int32Array(shared[name]);
}

/** Searches every key's own vector (k = 10, native threads) and checks each list exactly. */
function selfRecall(index: Index, keys: number[], accept: (key: number) => string | null): { hits: number; top1: number } {
  const k = 10;
  const queries = new Float32Array(keys.length * d);
  keys.forEach((key, i) => vectorFor(key, 0, d, queries, i * d));
  const r = index.searchBatch(queries, k, { threads: 2 });
  let hits = 0;
  let top1 = 0;
  const size = index.size;
  for (let i = 0; i < keys.length; i++) {
    const n = r.counts[i];
    const q = queries.subarray(i * d, (i + 1) * d);
    assertEquals(n, Math.min(k, size), `query for key ${keys[i]}: result count`);
    const list = r.keys.subarray(i * k, i * k + n);
    const problem = resultProblem(list, r.distances.subarray(i * k, i * k + n), k, (key, distance) => {
      const bad = accept(key);
      if (bad) return bad;
      return closeTo(distance, l2sq(q, vectorFor(key, 0, d))) ? null : "distance does not match the key's vector";
    });
    assert(problem === null, `self-search for key ${keys[i]}: ${problem}`);
    if (list.includes(BigInt(keys[i]))) hits++;
    if (n > 0 && list[0] === BigInt(keys[i])) top1++;
  }
  return { hits, top1 };
}

function assertKeySet(index: Index, expected: number[], what: string): void {
  const got = Array.from(index.keys(), Number).sort((a, b) => a - b);
  const want = [...expected].sort((a, b) => a - b);
  assertEquals(got.length, want.length, `${what}: keys().length`);
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) throw new Error(`${what}: keys() differs at ${i}: got ${got[i]}, expected ${want[i]}`);
  }
}

function assertStored(index: Index, key: number, version: number): void {
  const got = index.get(key);
  assert(got !== undefined, `get(${key}) found nothing`);
  const expected = vectorFor(key, version, d);
  for (let j = 0; j < d; j++) {
    assert(Object.is(got[j], expected[j]), `get(${key})[${j}] = ${got[j]}, expected ${expected[j]} (version ${version})`);
  }
}

async function withCrew<T>(index: Index, members: CrewMember[], shared: Record<string, SharedArrayBuffer>, body: (crew: Crew) => Promise<T>, stallMs?: number): Promise<T> {
  const crew = await Crew.start({ handle: index.handle, members, shared, stallMs });
  try {
    await crew.arrived();
    crew.set(W.go);
    return await body(crew);
  } finally {
    crew.dispose();
  }
}

test("workers: canaries: the watchdog names a stuck Worker; the checkers catch mixed vectors and bad result lists", async () => {
  // A vector mixed from two writers, and one with a single flipped bit, must not decode.
  const a = vectorFor(17, 4096 + 3, d);
  const b = vectorFor(17, 2 * 4096 + 3, d);
  const mixed = a.slice();
  mixed.set(b.subarray(8), 8);
  assertEquals(decodeVector(a, d), { key: 17, version: 4096 + 3 }, "an intact vector decodes");
  assertEquals(decodeVector(mixed, d), null, "a mixed vector");
  const flipped = a.slice();
  new Uint32Array(flipped.buffer)[5] ^= 1;
  assertEquals(decodeVector(flipped, d), null, "a vector with one flipped bit");
  const ok = () => null;
  assertEquals(resultProblem(new BigUint64Array([1n, 2n]), new Float32Array([1, 2]), 2, ok), null, "a good list");
  assert(resultProblem(new BigUint64Array([1n, 2n]), new Float32Array([2, 1]), 2, ok)?.includes("not ascending"), "unsorted list");
  assert(resultProblem(new BigUint64Array([1n, 1n]), new Float32Array([1, 2]), 2, ok)?.includes("twice"), "duplicate key");
  assert(resultProblem(new BigUint64Array([1n, 2n, 3n]), new Float32Array([1, 2, 3]), 2, ok)?.includes("for k = 2"), "more than k");

  // The watchdog must fail a run whose Worker stops making progress, and say where it stopped.
  const index = new Index(options);
  try {
    const started = performance.now();
    let message = "";
    try {
      await withCrew(index, [{ name: "stuck canary", script, role: "stall" }], {}, async (crew) => {
        await crew.result("stuck canary");
      }, 1_000);
    } catch (error) {
      message = (error as Error).message;
    }
    assert(message.includes("stuck canary") && message.includes('"search"') && message.includes("detail 4242"), `watchdog report: ${message || "none"}`);
    console.log(`[workers] watchdog canary caught in ${elapsed(started)}: ${message.split("\n")[1]?.trim()}`);
  } finally {
    index.close();
  }
});

test("workers: disjoint inserts beside searches give an exact size and bounded, sorted results from the inserted ranges", async () => {
  const start = performance.now();
  const inserters = soak ? 4 : 3;
  const searchers = soak ? 3 : 2;
  const per = soak ? 15_000 : 2_000;
  const index = new Index(options);
  const shared = books();
  const overlapNeeded = 25 * searchers;
  const members: CrewMember[] = [];
  for (let i = 0; i < inserters; i++) {
    members.push({
      name: `inserter ${i}`, script, role: "insert",
      params: { lo: 1 + i * per, hi: 1 + (i + 1) * per, d, seed: seed + i, midWait: { word: W.user0, atLeast: overlapNeeded }, doneWord: W.user1 },
    });
  }
  for (let i = 0; i < searchers; i++) {
    members.push({
      name: `searcher ${i}`, script, role: "search",
      params: { lo: 1, hi: 1 + inserters * per, d, seed: seed + 100 + i, overlapWord: W.user0, doneWord: W.user1, inserters },
    });
  }
  try {
    const counts = await withCrew(index, members, shared, async (crew) => {
      for (let i = 0; i < inserters; i++) assertEquals((await crew.result<{ inserted: number }>(`inserter ${i}`)).inserted, per);
      crew.stop();
      const out = [];
      for (let i = 0; i < searchers; i++) out.push(await crew.result<{ searches: number; overlapping: number }>(`searcher ${i}`));
      assert(Atomics.load(crew.words, W.user0) >= overlapNeeded, "searches overlapping the inserts");
      return out;
    });
    const total = inserters * per;
    assertEquals(index.size, total, "size after the inserts");
    const all = Array.from({ length: total }, (_, i) => i + 1);
    assertKeySet(index, all, "after the inserts");
    for (const key of all) assertStored(index, key, 0);
    const { hits, top1 } = selfRecall(index, all, (key) => (key >= 1 && key <= total ? null : "key outside the inserted ranges"));
    assert(hits / total >= 0.99, `self-recall ${hits}/${total}`);
    const stats = index.stats();
    assertEquals(stats.slots_used, total, "slots_used");
    assertEquals(stats.tombstones, 0, "tombstones");
    assertHealthy(index);
    const searches = counts.reduce((s, c) => s + c.searches, 0);
    const overlapping = counts.reduce((s, c) => s + c.overlapping, 0);
    console.log(`[workers] disjoint inserts: ${inserters} Workers x ${per} adds, ${searchers} searchers: ${searches} searches (${overlapping} during the inserts), self-recall ${(hits / total).toFixed(4)} (top-1 ${(top1 / total).toFixed(4)}), ${stats.remaps} remaps, ${elapsed(start)}`);
  } finally {
    index.close();
  }
}, timeoutMs);

test("workers: interleaved inserts, removes and searches never return a removed key; live keys are found", async () => {
  const start = performance.now();
  const churners = soak ? 3 : 2;
  const readers = soak ? 3 : 2;
  const per = soak ? 15_000 : 2_000;
  const index = new Index(options);
  const shared = books();
  const overlapNeeded = 25 * readers;
  const absentKey = max_key - 1;
  const members: CrewMember[] = [];
  for (let i = 0; i < churners; i++) {
    members.push({
      name: `churner ${i}`, script, role: "churn",
      params: { lo: 1 + i * per, hi: 1 + (i + 1) * per, d, seed: seed + 200 + i, removeProbability: 0.3, midWait: { word: W.user0, atLeast: overlapNeeded }, doneWord: W.user1, absentKey },
    });
  }
  for (let i = 0; i < readers; i++) {
    members.push({
      name: `reader ${i}`, script, role: "membership",
      params: { lo: 1, hi: 1 + churners * per, d, seed: seed + 300 + i, overlapWord: W.user0, doneWord: W.user1, inserters: churners },
    });
  }
  try {
    const [churned, read] = await withCrew(index, members, shared, async (crew) => {
      const churned = [];
      for (let i = 0; i < churners; i++) churned.push(await crew.result<{ inserted: number; removed: number }>(`churner ${i}`));
      crew.stop();
      const read = [];
      for (let i = 0; i < readers; i++) read.push(await crew.result<{ calls: number; mustBePresent: number; mustBeAbsent: number; searches: number }>(`reader ${i}`));
      return [churned, read] as const;
    });
    const inserted = int32(shared, "inserted");
    const removed = int32(shared, "removed");
    const live: number[] = [];
    const gone: number[] = [];
    for (let key = 1; key <= churners * per; key++) {
      assert(inserted[key] !== 0, `key ${key} was never inserted`);
      (removed[key] !== 0 ? gone : live).push(key);
    }
    assertEquals(gone.length, churned.reduce((s, c) => s + c.removed, 0), "removed keys in the books");
    assertEquals(index.size, live.length, "size = inserted - removed");
    assertKeySet(index, live, "after the churn");
    for (const key of live) assertStored(index, key, 0);
    for (const key of gone) {
      assert(!index.has(key), `has(${key}) of a removed key`);
      assert(index.get(key) === undefined, `get(${key}) of a removed key`);
    }
    const goneSet = new Set(gone);
    const { hits } = selfRecall(index, live, (key) => (goneSet.has(key) ? "a removed key" : key < 1 || key > churners * per ? "never inserted" : null));
    assert(hits / live.length >= 0.99, `self-recall over live keys ${hits}/${live.length}`);
    const stats = index.stats();
    assertEquals(stats.slots_used, churners * per, "slots_used");
    assertEquals(stats.tombstones, gone.length, "tombstones");
    assertHealthy(index);
    const calls = read.reduce((s, r) => s + r.calls, 0);
    const searches = read.reduce((s, r) => s + r.searches, 0);
    const present = read.reduce((s, r) => s + r.mustBePresent, 0);
    const absent = read.reduce((s, r) => s + r.mustBeAbsent, 0);
    console.log(`[workers] churn: ${churners * per} adds, ${gone.length} removes, ${calls} has/get (${present} must-find, ${absent} must-miss checks), ${searches} searches, self-recall ${(hits / live.length).toFixed(4)}, ${elapsed(start)}`);
  } finally {
    index.close();
  }
}, timeoutMs);

test("workers: concurrent upserts of the same keys leave each key with exactly one writer's whole vector", async () => {
  const start = performance.now();
  const keys = soak ? 2_000 : 500;
  const writers = 3;
  const rounds = soak ? 20 : 8;
  const index = new Index(options);
  const preload = new Float32Array(keys * d);
  const column = new BigUint64Array(keys);
  for (let key = 1; key <= keys; key++) {
    column[key - 1] = BigInt(key);
    vectorFor(key, 0, d, preload, (key - 1) * d);
  }
  index.add(column, preload, { threads: 2 });
  const members: CrewMember[] = [];
  for (let w = 1; w <= writers; w++) {
    members.push({ name: `upserter ${w}`, script, role: "upsert", params: { keys, d, wid: w, writers, rounds, seed: seed + 400 + w, stepWord: W.user0, overlap: 200 } });
  }
  members.push({ name: "upsert reader", script, role: "upsert-reader", params: { keys, d, wid: 0, writers, rounds, seed: seed + 500, stepWord: W.user0, overlap: 200 } });
  try {
    const reader = await withCrew(index, members, {}, async (crew) => {
      for (let w = 1; w <= writers; w++) assertEquals((await crew.result<{ writes: number }>(`upserter ${w}`)).writes, keys * rounds);
      crew.stop();
      return await crew.result<{ searches: number; gets: number; snapshots: number; liveScans: number; liveDuplicates: number }>("upsert reader");
    });
    assertEquals(index.size, keys, "size after the upserts");
    assertKeySet(index, Array.from({ length: keys }, (_, i) => i + 1), "after the upserts");
    const winners = new Map<number, number>();
    for (let key = 1; key <= keys; key++) {
      const got = index.get(key);
      assert(got !== undefined, `get(${key})`);
      const decoded = decodeVector(got, d);
      assert(decoded !== null, `get(${key}) is a mix of writers' vectors: ${Array.from(got)}`);
      assertEquals(decoded.key, key, `get(${key}) key component`);
      assert(validUpsertVersion(decoded.version, writers, rounds), `get(${key}) version ${decoded.version}`);
      const wid = Math.floor(decoded.version / 4096);
      // Each Worker overwrote its own earlier rounds, so the survivor is some Worker's last round.
      assert(wid >= 1 && decoded.version % 4096 === rounds - 1, `key ${key} ends with writer ${wid} round ${decoded.version % 4096}, not a last round`);
      winners.set(wid, (winners.get(wid) ?? 0) + 1);
    }
    const stats = index.stats();
    assertEquals(stats.slots_used, keys + writers * rounds * keys, "slots_used: one slot per write");
    assertEquals(stats.tombstones, writers * rounds * keys, "tombstones: every replaced slot");
    assertHealthy(index);
    console.log(`[workers] upserts: ${writers} Workers x ${rounds} rounds x ${keys} keys = ${writers * rounds * keys} upserts; reader: ${reader.searches} searches, ${reader.gets} gets, ${reader.snapshots} snapshots, ${reader.liveScans} live keys() scans (${reader.liveDuplicates} duplicate entries seen); survivors by writer ${JSON.stringify(Object.fromEntries(winners))}, ${elapsed(start)}`);
  } finally {
    index.close();
  }
}, timeoutMs);

test("workers: the owner closes mid-run; Workers get ClosedError (code CLOSED) and the process stays healthy", async () => {
  const start = performance.now();
  const users = soak ? 6 : 4;
  const preloaded = 400;
  const index = new Index(options);
  // Room for every key the users add: no growth remap, so views stay valid until the close.
  index.reserve(1_000 + users * 4_000);
  for (let key = 1; key <= preloaded; key++) index.add(key, vectorFor(key, 0, d));
  const epoch = index.epoch;
  const handle = index.handle;
  const members: CrewMember[] = [];
  for (let i = 0; i < users; i++) {
    members.push({
      name: `user ${i}`, script, role: "user",
      params: { lo: 1_000 + i * 4_000, hi: 1_000 + (i + 1) * 4_000, d, seed: seed + 600 + i, preloaded, universe: 1_000 + users * 4_000, closedWord: W.user0, warmAfter: soak ? 2_000 : 150, batchThreads: i % 2 === 0 },
    });
  }
  const results: Array<{ calls: number; firstClosed: string; heldViewAfterClose: string; failures: string[] }> = [];
  await withCrew(index, members, {}, async (crew) => {
    for (let i = 0; i < users; i++) await crew.signal(`user ${i}`, "warm");
    // Every Worker is mid-run; the index is still sound right before it closes.
    assertHealthy(index, "before close");
    // A precondition of the view checks below (a remap would make the held views stale first).
    assertEquals(index.epoch, epoch, "epoch before close: reserve() covered every key the users add, yet the storage was remapped");
    index.close();
    crew.set(W.user0, 1);
    for (let i = 0; i < users; i++) results.push(await crew.result(`user ${i}`));
  });
  assert(index.closed, "the owner is closed");
  assertThrows(() => index.stats(), ClosedError, "CLOSED");
  assertThrows(() => index.search(vectorFor(1, 0, d), 1), ClosedError, "CLOSED");
  // The index is freed (Workers hold no reference), and its handle still says it was closed.
  assertThrows(() => Index.attach(handle), ClosedError, "CLOSED");
  assertThrows(() => Index.attach(handle + 2 ** 32), InvalidHandleError, "INVALID_HANDLE");

  // The process is healthy: a new index works, from this thread and from Workers.
  const fresh = new Index(options);
  try {
    for (let key = 1; key <= 300; key++) fresh.add(key, vectorFor(key, 0, d));
    const shared = books();
    const per = 300;
    // The fresh index's first 300 keys were added here: mark them in the books before any search.
    const inserting = int32(shared, "inserting");
    for (let key = 1; key <= 300; key++) Atomics.store(inserting, key, 1);
    await withCrew(fresh, [
      { name: "inserter after close", script, role: "insert", params: { lo: 301, hi: 301 + per, d, seed: seed + 700, doneWord: W.user1 } },
      { name: "searcher after close", script, role: "search", params: { lo: 1, hi: 301 + per, d, seed: seed + 701, overlapWord: W.user0, doneWord: W.user1, inserters: 1 } },
    ], shared, async (crew) => {
      await crew.result("inserter after close");
      crew.stop();
      await crew.result("searcher after close");
    });
    assertEquals(fresh.size, 300 + per, "size of the index made after the close");
    for (let key = 1; key <= 300 + per; key++) assertStored(fresh, key, 0);
    assertHealthy(fresh, "index made after the close");
  } finally {
    fresh.close();
  }
  const calls = results.reduce((s, r) => s + r.calls, 0);
  const failures = results.flatMap((r, i) => r.failures.map((f) => `user ${i}: ${f}`));
  console.log(`[workers] close mid-run: ${users} Workers made ${calls} calls before their first ClosedError (first failing calls: ${results.map((r) => r.firstClosed).join(", ")}); a view kept across the close: ${results[0].heldViewAfterClose}; ${elapsed(start)}`);
  assert(failures.length === 0, `after the owner's close:\n  ${failures.join("\n  ")}`);
}, timeoutMs);

test("workers: batch add and batch search on native threads beside single-op Workers", async () => {
  const start = performance.now();
  const per = soak ? 12_000 : 1_200;
  const batchKeys = soak ? 20_000 : 2_000;
  const index = new Index(options);
  const shared = books();
  const writers = 3; // two single-op inserters and the batch Worker
  const members: CrewMember[] = [
    { name: "batcher", script, role: "batch", params: { lo: 1, hi: 1 + batchKeys, d, seed: seed + 800, batch: 128, queries: 32, threads: 2, doneWord: W.user1 } },
    { name: "inserter 0", script, role: "insert", params: { lo: 1 + batchKeys, hi: 1 + batchKeys + per, d, seed: seed + 801, doneWord: W.user1 } },
    { name: "inserter 1", script, role: "insert", params: { lo: 1 + batchKeys + per, hi: 1 + batchKeys + 2 * per, d, seed: seed + 802, doneWord: W.user1 } },
    { name: "searcher", script, role: "search", params: { lo: 1, hi: 1 + batchKeys + 2 * per, d, seed: seed + 803, overlapWord: W.user0, doneWord: W.user1, inserters: writers } },
  ];
  try {
    const [batcher, searcher] = await withCrew(index, members, shared, async (crew) => {
      const batcher = await crew.result<{ batches: number; inserted: number; searched: number; selfHits: number }>("batcher");
      await crew.result("inserter 0");
      await crew.result("inserter 1");
      crew.stop();
      const searcher = await crew.result<{ searches: number; overlapping: number }>("searcher");
      return [batcher, searcher] as const;
    });
    const total = batchKeys + 2 * per;
    assertEquals(batcher.inserted, batchKeys, "keys the batch Worker added");
    assertEquals(index.size, total, "size after batches and single adds");
    const all = Array.from({ length: total }, (_, i) => i + 1);
    assertKeySet(index, all, "after batches and single adds");
    for (const key of all) assertStored(index, key, 0);
    const { hits } = selfRecall(index, all, (key) => (key >= 1 && key <= total ? null : "never inserted"));
    assert(hits / total >= 0.99, `self-recall ${hits}/${total}`);
    assertHealthy(index);
    console.log(`[workers] batches: ${batcher.batches} batches of 128 on 2 native threads (${batcher.searched} batch queries, ${(batcher.selfHits / batcher.searched).toFixed(3)} found themselves mid-run) beside 2 single-op inserters (${2 * per} adds) and ${searcher.searches} single searches (${searcher.overlapping} during writes), self-recall ${(hits / total).toFixed(4)}, ${elapsed(start)}`);
  } finally {
    index.close();
  }
}, timeoutMs);
