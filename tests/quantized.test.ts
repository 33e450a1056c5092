/**
 * i8 storage (native/kernels/quantize.zig, native/index/centre.zig): vectors are walked as 8-bit codes around a
 * per-dimension centre (given, or the mean of the first add call), and the best candidates are
 * reranked on the exact f32 vectors of the `.vectors` file.
 *
 * The data: 16 Gaussian clusters in 32 dimensions with +300 added to every component, a common
 * offset 75 times the spread of the clusters. Codes taken around zero would spend their 8 bits
 * on the offset (a step of ~2.4 against features of ~4); around the trained centre they spend
 * them on what tells vectors apart. Queries are 200 held-out points of the same distribution.
 * Under ip the rows are scaled to unit length (after the offset): unnormalized, one direction
 * dominates every inner product, the top 10 is the same few vectors for every query, and recall
 * measures whether the graph reaches those hubs (f32 and i8 alike score 0.7 to 1.0 by chance).
 * Unit rows with a shared direction are the usual ip workload (normalized embeddings), and the
 * ip codes still carry the terms of a centre far from zero.
 *
 * The exact top 10 is computed here in float64. Seeded: QUIVER_SEED=<seed> replays a failure.
 */
import {
  BusyError,
  DimensionMismatchError,
  Index,
  InvalidArgumentError,
  InvalidDimensionsError,
  InvalidVectorError,
  type Metric,
  type Storage,
} from "../mod.ts";
import { native } from "../src/runtime/loader.ts";
import { limits } from "../src/ffi.gen.ts";
import { check } from "../src/errors.ts";
import { assert, assertEquals, assertThrows, bitsOf, clustered, rng, seedFromEnv, tempDir, test } from "./harness.ts";
import { removeDir, sameVector } from "./fixtures/util.ts";

const seed = seedFromEnv(8080);
console.log(`quantized.test.ts seed=${seed} (replay with QUIVER_SEED=${seed})`);

const d = 32;
const n = 4000;
const queryCount = 200;
const k = 10;
const offset = 300;
/**
 * The recall bounds. Results are reranked on the exact vectors, so i8 loses a true neighbour
 * only if the walk on codes never reaches it or ranks it below the rerank window
 * (max(3k, k + 32) = 42 candidates). With the centre at the data's mean, a vector's step is
 * max|x - centre| / 127, about a tenth of a feature's spread, and the walk is nearly f32's:
 * over seeds 8080, 1 and 2, i8 minus f32 recall is within [-0.002, +0.004] for every metric
 * (f32: l2 0.998-1.000, ip and cosine 0.973-0.979). So: at most `maxLoss` below f32's recall on
 * the same data with the same parameters (room for a graph built from codes, and thread order,
 * not for a broken walk), and at least `minRecall` outright. A bad centre (the canary) scores
 * about 0.015.
 */
const minRecall = 0.95;
const maxLoss = 0.02;

const rows = clustered(n + queryCount, d, seed, 16);
for (let i = 0; i < rows.length; i++) rows[i] += offset;
const unitRows = Float32Array.from(rows);
for (let r = 0; r < n + queryCount; r++) {
  const v = unitRows.subarray(r * d, (r + 1) * d);
  const norm = Math.hypot(...v);
  for (let j = 0; j < d; j++) v[j] /= norm;
}
/** The metric's data set: the offset rows, unit length under ip. */
const dataFor = (metric: Metric) => (metric === "ip" ? unitRows : rows).subarray(0, n * d);
const queriesFor = (metric: Metric) => (metric === "ip" ? unitRows : rows).subarray(n * d);
const allKeys = BigUint64Array.from({ length: n }, (_, i) => BigInt(i));

const row = (data: Float32Array, i: number) => data.subarray(i * d, (i + 1) * d);

/** The exact distance in float64 (l2: squared euclidean; ip: 1 - dot; cosine: 1 - cos). */
function exact(metric: Metric, a: Float32Array, b: Float32Array): number {
  let s = 0;
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let j = 0; j < a.length; j++) {
    s += (a[j] - b[j]) ** 2;
    dot += a[j] * b[j];
    na += a[j] * a[j];
    nb += b[j] * b[j];
  }
  return metric === "l2" ? s : metric === "ip" ? 1 - dot : 1 - dot / Math.sqrt(na * nb);
}

/** The exact k nearest of `candidates` (keys into `data`) to each query, as sets of keys. */
function bruteForce(metric: Metric, data: Float32Array, queries: Float32Array, candidates: Iterable<number>): Set<number>[] {
  const ids = [...candidates];
  const truth: Set<number>[] = [];
  for (let q = 0; q < queries.length / d; q++) {
    const query = row(queries, q);
    const scored = ids.map((i) => [i, exact(metric, row(data, i), query)] as const);
    scored.sort((a, b) => a[1] - b[1] || a[0] - b[0]);
    truth.push(new Set(scored.slice(0, k).map(([i]) => i)));
  }
  return truth;
}

const truthCache = new Map<Metric, Set<number>[]>();
function truthFor(metric: Metric): Set<number>[] {
  if (!truthCache.has(metric)) truthCache.set(metric, bruteForce(metric, dataFor(metric), queriesFor(metric), allKeys.keys()));
  return truthCache.get(metric)!;
}

/** recall@k of a batch search against `truth`; checks counts, sortedness and duplicates too. */
function recallOf(result: { keys: BigUint64Array; distances: Float32Array; counts: Uint32Array }, truth: Set<number>[], what: string): number {
  let hits = 0;
  for (let q = 0; q < truth.length; q++) {
    assertEquals(result.counts[q], k, `${what}: query ${q} got ${result.counts[q]} results`);
    const keys = result.keys.subarray(q * k, (q + 1) * k);
    assertEquals(new Set(keys).size, k, `${what}: query ${q} returned a key twice`);
    for (let i = 0; i < k; i++) {
      if (i > 0) assert(result.distances[q * k + i - 1] <= result.distances[q * k + i], `${what}: query ${q}: distances not ascending`);
      if (truth[q].has(Number(keys[i]))) hits++;
    }
  }
  return hits / (truth.length * k);
}

function build(metric: Metric, storage: Storage, centre?: Float32Array): Index {
  const index = new Index({ dimensions: d, metric, storage, ...(centre ? { centre } : {}) });
  index.add(allKeys, dataFor(metric), { threads: 2 });
  return index;
}

/** The float64 mean of `count` rows (scaled to unit length when `unit`). */
function meanOf(data: Float32Array, count: number, unit: boolean): Float64Array {
  const mean = new Float64Array(d);
  for (let i = 0; i < count; i++) {
    const v = row(data, i);
    const scale = unit ? 1 / Math.hypot(...v) : 1;
    for (let j = 0; j < d; j++) mean[j] += (v[j] * scale) / count;
  }
  return mean;
}

function assertNear(actual: Float32Array, expected: ArrayLike<number>, relative: number, what: string): void {
  assertEquals(actual.length, expected.length, `${what}: length`);
  for (let j = 0; j < actual.length; j++) {
    const tolerance = relative * Math.max(1, Math.abs(expected[j]));
    assert(Math.abs(actual[j] - expected[j]) <= tolerance, `${what}[${j}] = ${actual[j]}, expected ${expected[j]} (within ${tolerance})`);
  }
}

/** Searches, key set, vectors and the centre: what must survive a reopen, a save or a backup. */
function image(index: Index, queries: Float32Array) {
  const keys = [...index.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    keys,
    vectors: keys.map((key) => bitsOf(index.get(key)!)),
    centre: bitsOf(index.centre()),
    storage: index.stats().storage,
    centreSet: index.stats().centre_set,
    batch: index.searchBatch(queries, k, { ef: 64 }),
    single: Array.from({ length: 20 }, (_, q) => index.search(row(queries, q), k, { ef: 64 })),
  };
}

function assertSameImage(actual: ReturnType<typeof image>, expected: ReturnType<typeof image>, what: string): void {
  assertEquals(actual.storage, 2, `${what}: storage`);
  assertEquals(actual.centreSet, 1, `${what}: centre_set`);
  assertEquals(actual.centre, expected.centre, `${what}: centre`);
  assertEquals(actual.keys, expected.keys, `${what}: keys`);
  for (let i = 0; i < expected.keys.length; i++) assertEquals(actual.vectors[i], expected.vectors[i], `${what}: vector of key ${expected.keys[i]}`);
  assertEquals(actual.batch, expected.batch, `${what}: batch search results and distances`);
  assertEquals(actual.single, expected.single, `${what}: search results and distances`);
}

// ---------------------------------------------------------------------------------------------
// Recall, and exact distances.

// rabitq storage walks the same i8 codes (of rotated vectors) but scores each node's neighbours
// from the RaBitQ codes of its edges, inline in its record (native/hnsw/codes.zig): the same
// bounds hold, and verify re-derives every edge.
for (const [quantized, kind] of [["i8", 2], ["rabitq", 3]] as const) for (const metric of ["l2", "ip", "cosine"] as const) {
  test(`quantized: ${quantized} recall@10 (${metric}, offset data) >= ${minRecall} and within ${maxLoss} of f32's; distances are f32's, bit for bit`, () => {
    const truth = truthFor(metric);
    const queries = queriesFor(metric);
    using f32 = build(metric, "f32");
    using i8 = build(metric, quantized);
    const stats = i8.stats();
    assertEquals([stats.storage, stats.centre_set, f32.stats().storage], [kind, 1, 0], "storage kinds and centre_set");
    const report = i8.verify();
    assert(report.ok && Number(report.code_mismatches) === 0, `verify: ${JSON.stringify(report, (_k, v) => (typeof v === "bigint" ? Number(v) : v))}`);
    if (metric !== "ip") assert(report.unreachable_live <= n / 100, `${report.unreachable_live} unreachable live nodes`);

    const exactResult = f32.searchBatch(queries, k, { threads: 2 });
    const quantResult = i8.searchBatch(queries, k, { threads: 2 });
    const f32Recall = recallOf(exactResult, truth, "f32");
    const i8Recall = recallOf(quantResult, truth, quantized);
    console.log(`quantized ${metric}: recall@10 f32 ${f32Recall.toFixed(3)}, ${quantized} ${i8Recall.toFixed(3)}`);
    assert(i8Recall >= minRecall, `${metric}: i8 recall@10 ${i8Recall} < ${minRecall}`);
    assert(i8Recall >= f32Recall - maxLoss, `${metric}: i8 recall@10 ${i8Recall} is more than ${maxLoss} below f32's ${f32Recall}`);

    // Reported distances are exact: the f32 index's for every key both return (the same kernel
    // on the same stored vector), and the float64 distance within float32 rounding.
    let compared = 0;
    for (let q = 0; q < queryCount; q++) {
      const byKey = new Map<bigint, number>();
      for (let i = q * k; i < (q + 1) * k; i++) byKey.set(exactResult.keys[i], exactResult.distances[i]);
      for (let i = q * k; i < (q + 1) * k; i++) {
        const key = quantResult.keys[i];
        const got = quantResult.distances[i];
        const want = exact(metric, row(dataFor(metric), Number(key)), row(queries, q));
        assert(Math.abs(got - want) <= 1e-6 * Math.max(1, Math.abs(want)), `query ${q}, key ${key}: distance ${got}, exact ${want}`);
        if (!byKey.has(key)) continue;
        assert(Object.is(byKey.get(key), got), `query ${q}, key ${key}: i8 reports ${got}, f32 ${byKey.get(key)}`);
        compared++;
      }
    }
    assert(compared >= 0.9 * queryCount * k, `only ${compared} results in common with f32`);
    // One query at a time gives the batch's answers.
    for (let q = 0; q < 10; q++) {
      const single = i8.search(row(queries, q), k);
      assertEquals(single.keys, quantResult.keys.subarray(q * k, (q + 1) * k), `search vs searchBatch keys, query ${q}`);
      assertEquals(single.distances, quantResult.distances.subarray(q * k, (q + 1) * k), `search vs searchBatch distances, query ${q}`);
    }
  });
}

test("quantized: rabitq storage takes at most 4096 dimensions (limits.maxRabitqDimensions); beyond is InvalidDimensionsError", () => {
  assertThrows(() => new Index({ dimensions: limits.maxRabitqDimensions + 1, storage: "rabitq" }), InvalidDimensionsError);
  using wide = new Index({ dimensions: limits.maxRabitqDimensions, storage: "rabitq" });
  const v = new Float32Array(limits.maxRabitqDimensions).map((_, i) => Math.sin(i));
  wide.add(1, v);
  wide.add(2, v.map((x) => x + 0.5));
  assertEquals(Array.from(wide.search(v, 1).keys), [1n], "the nearest of two");
  assert(wide.verify().ok, "verify");
});

test("quantized: canary: the recall check fails with a centre far from the data, and against a wrong ground truth", () => {
  for (const metric of ["l2", "ip", "cosine"] as const) {
    const truth = truthFor(metric);
    // Codes around zero spend their bits on the offset: the walk is noise, and the exact rerank
    // of its first 42 candidates cannot save it.
    using bad = build(metric, "i8", new Float32Array(d));
    assertEquals(bitsOf(bad.centre()), bitsOf(new Float32Array(d)), `${metric}: the given zero centre`);
    const badRecall = recallOf(bad.searchBatch(queriesFor(metric), k, { threads: 2 }), truth, `${metric}, zero centre`);
    assert(badRecall < minRecall - 0.3, `${metric}: recall ${badRecall} with a zero centre: the recall bound cannot tell a bad walk`);
    // The good index measured against the truth of other queries (query q + 100) scores low.
    using good = build(metric, "i8");
    const shifted = truth.map((_, q) => truth[(q + 100) % truth.length]);
    const wrong = recallOf(good.searchBatch(queriesFor(metric), k, { threads: 2 }), shifted, `${metric}, wrong truth`);
    assert(wrong < 0.5, `${metric}: recall ${wrong} against a wrong ground truth: the measure is vacuous`);
    console.log(`quantized canary ${metric}: zero centre recall ${badRecall.toFixed(3)}, wrong truth ${wrong.toFixed(3)}`);
  }
});

test("quantized: stored vectors are exact: get() and view() bit for bit, a self-query at distance exactly 0", () => {
  for (const metric of ["l2", "ip"] as const) {
    const data = dataFor(metric);
    using index = build(metric, "i8");
    const random = rng(seed ^ 0x18);
    for (let t = 0; t < 200; t++) {
      const i = Math.floor(random() * n);
      const want = row(data, i);
      assertEquals(bitsOf(index.get(i)!), bitsOf(want), `${metric}: get(${i})`);
      {
        using view = index.view(i);
        assertEquals(bitsOf(view.array), bitsOf(want), `${metric}: view(${i})`);
      }
      if (metric === "l2") {
        // The walk's own (code) distance of a vector to itself is not 0; the rerank's is.
        const r = index.search(want, 3);
        assertEquals(r.keys[0], BigInt(i), `self-query of ${i}`);
        assert(Object.is(r.distances[0], 0), `self-query of ${i}: distance ${r.distances[0]}, not 0`);
        assert(r.distances[1] > 0, `self-query of ${i}: a second result at distance ${r.distances[1]}`);
      }
    }
    if (metric === "l2") {
      // Canary: ranked by the walk (no rerank), many of the same self-queries do not report
      // exactly 0 (the code distance is clamped at 0 from below, so some do), so the check above
      // rests on the rerank, not on codes that happen to be exact. None may be negative.
      let zeros = 0;
      for (let i = 0; i < 200; i++) {
        const d = index.search(row(data, i), 1, { rerank: false }).distances[0];
        assert(d >= 0, `walk-ranked self-query of ${i}: negative distance ${d}`);
        if (Object.is(d, 0)) zeros++;
      }
      assert(zeros < 150, `${zeros}/200 walk-ranked self-queries report exactly 0: the exactness check is vacuous`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// The centre.

test("quantized: the trained centre is the mean of the first add call (of unit vectors under cosine) and never moves", () => {
  for (const metric of ["l2", "ip", "cosine"] as const) {
    const data = dataFor(metric);
    using index = new Index({ dimensions: d, metric, storage: "i8" });
    assertEquals([index.stats().storage, index.stats().centre_set], [2, 0], `${metric}: before the first add`);
    assertEquals(bitsOf(index.centre()), bitsOf(new Float32Array(d)), `${metric}: the centre before the first add`);
    const first = 1500;
    index.add(allKeys.subarray(0, first), data.subarray(0, first * d), { threads: 2 });
    assertEquals(index.stats().centre_set, 1, `${metric}: centre_set after the first add`);
    const trained = index.centre();
    // float32 accumulation over 1500 rows: measured relative error ~3e-6.
    assertNear(trained, meanOf(data, first, metric === "cosine"), 2e-5, `${metric}: trained centre`);
    if (metric !== "cosine") assert(trained.every((c) => c > (metric === "ip" ? 0.1 : 250)), `${metric}: the centre lost the offset: ${trained}`);
    // Later adds, even far from the centre, leave it as it is.
    const far = Float32Array.from(data.subarray(first * d, n * d), (x) => -x);
    index.add(allKeys.subarray(first), far);
    index.add(99_999n, new Float32Array(d).fill(-1000));
    assertEquals(bitsOf(index.centre()), bitsOf(trained), `${metric}: the centre moved after later adds`);
    assertEquals(index.size, n + 1);
    assert(index.verify().ok, `${metric}: verify`);
    // Vectors ~600 from the centre get a step of ~5 (max|x - centre| / 127), too coarse to
    // tell the members of a cluster apart: the walk still lands among them (the far rows), and
    // the reported distance is the exact one; finding the exact self is not promised here.
    const query = far.subarray(0, d);
    const r = index.search(query, 1, { ef: 200 });
    // (Under cosine the vector -1000 * 1 points the same way as the far rows: it counts too.)
    if (metric !== "ip") assert(r.keys[0] >= BigInt(first), `${metric}: a far vector found ${r.keys[0]}, a row of the first batch`);
    const found = index.get(r.keys[0])!;
    const want = exact(metric, found, query);
    assert(Math.abs(r.distances[0] - want) <= 1e-6 * Math.max(1, Math.abs(want)), `${metric}: far query: distance ${r.distances[0]}, exact ${want}`);
  }
  // A first add of one vector: the centre is that vector, exactly.
  using one = new Index({ dimensions: d, storage: "i8" });
  one.add(5, row(rows, 5));
  assertEquals(bitsOf(one.centre()), bitsOf(row(rows, 5)), "the centre of a one-vector first add");
  one.add(6, row(rows, 6));
  assertEquals(bitsOf(one.centre()), bitsOf(row(rows, 5)), "the centre after a second single add");
  assertEquals(one.search(row(rows, 5), 1).distances[0], 0, "the vector at the centre (all-zero codes) finds itself");
});

test("quantized: a given centre is kept, persisted, and accepted again on reopen", () => {
  const given = Float32Array.from({ length: d }, (_, j) => offset + Math.sin(j) * 3);
  using index = new Index({ dimensions: d, storage: "i8", centre: Array.from(given) });
  assertEquals(index.stats().centre_set, 1, "centre_set before any add");
  assertEquals(bitsOf(index.centre()), bitsOf(given), "the given centre (from a plain array)");
  index.add(allKeys, rows.subarray(0, n * d), { threads: 2 });
  assertEquals(bitsOf(index.centre()), bitsOf(given), "the given centre after the first add");
  const recall = recallOf(index.searchBatch(queriesFor("l2"), k), truthFor("l2"), "given centre");
  assert(recall >= minRecall, `recall ${recall} around a given centre near the data`);

  // Given before any add and persisted alone: the header flag carries it (no slot in use).
  const dir = tempDir();
  try {
    const path = `${dir}/given`;
    Index.open(path, { dimensions: d, storage: "i8", centre: given }).close();
    {
      using reopened = Index.open(path);
      assertEquals([reopened.stats().storage, reopened.stats().centre_set], [2, 1], "reopen of an empty index with a given centre");
      assertEquals(bitsOf(reopened.centre()), bitsOf(given), "the persisted centre");
      reopened.add(allKeys.subarray(0, 100), rows.subarray(0, 100 * d));
      assertEquals(bitsOf(reopened.centre()), bitsOf(given), "a first add after the reopen did not train over the given centre");
    }
    using again = Index.open(path, { storage: "i8", centre: given });
    assertEquals(again.size, 100);
  } finally {
    removeDir(dir);
  }
});

test("quantized: centre errors are typed and leave the index working", () => {
  // Through the constructor: no index results.
  assertThrows(() => new Index({ dimensions: d, storage: "i8", centre: new Float32Array(d - 1) }), DimensionMismatchError);
  assertThrows(() => new Index({ dimensions: d, storage: "i8", centre: new Float32Array(d + 1) }), DimensionMismatchError);
  assertThrows(() => new Index({ dimensions: d, storage: "f32", centre: new Float32Array(d) }), InvalidArgumentError);
  assertThrows(() => new Index({ dimensions: d, storage: "f16", centre: new Float32Array(d) }), InvalidArgumentError);
  for (const bad of [NaN, Infinity, -Infinity]) {
    const centre = new Float32Array(d).fill(1);
    centre[7] = bad;
    assertThrows(() => new Index({ dimensions: d, storage: "i8", centre }), InvalidVectorError);
  }
  // Finite but beyond what a stored vector may be (squared norm > 1e37): its terms would
  // overflow f32 and every walk distance would be infinite.
  assertThrows(() => new Index({ dimensions: d, storage: "i8", centre: new Float32Array(d).fill(1e20) }), InvalidVectorError);
  {
    // Zero is a fine centre, under cosine too (where a zero vector is not).
    using cosine = new Index({ dimensions: d, metric: "cosine", storage: "i8", centre: new Float32Array(d) });
    assertEquals(cosine.stats().centre_set, 1);
  }
  {
    using f32 = new Index({ dimensions: d });
    assertThrows(() => f32.centre(), InvalidArgumentError);
  }

  // On a live index (the FFI call the options use): each error leaves it as it was.
  const setCentre = (index: Index, centre: Float32Array) => check(native().fn.qv_index_set_centre(index.handle, centre, centre.length));
  const data = dataFor("l2");
  using index = new Index({ dimensions: d, storage: "i8" });
  assertThrows(() => setCentre(index, new Float32Array(d - 1)), DimensionMismatchError);
  const nan = new Float32Array(d).fill(offset);
  nan[0] = NaN;
  assertThrows(() => setCentre(index, nan), InvalidVectorError);
  assertEquals(index.stats().centre_set, 0, "a rejected centre was set");
  index.add(allKeys.subarray(0, 1000), data.subarray(0, 1000 * d));
  const trained = index.centre();
  assertNear(trained, meanOf(data, 1000, false), 2e-5, "the centre trained after rejected ones");
  const moved = Float32Array.from(trained, (c, j) => (j === 3 ? c + 1 : c));
  assertThrows(() => setCentre(index, moved), BusyError);
  assertThrows(() => setCentre(index, new Float32Array(d - 1)), DimensionMismatchError);
  assertThrows(() => setCentre(index, nan), InvalidVectorError);
  setCentre(index, Float32Array.from(trained)); // the same centre: accepted
  assertEquals(bitsOf(index.centre()), bitsOf(trained), "the centre after the rejected changes");
  index.add(allKeys.subarray(1000, 2000), data.subarray(1000 * d, 2000 * d));
  assertEquals(index.size, 2000);
  assert(index.verify().ok, "verify after the errors");
  for (const i of [0, 999, 1000, 1999]) {
    const r = index.search(row(data, i), 1);
    assertEquals([r.keys[0], r.distances[0]], [BigInt(i), 0], `self-query of ${i} after the errors`);
  }

  // On reopen: a different centre is BusyError and leaves the files as they were.
  const dir = tempDir();
  try {
    const path = `${dir}/index`;
    {
      using created = Index.open(path, { dimensions: d, storage: "i8" });
      created.add(allKeys.subarray(0, 500), data.subarray(0, 500 * d));
    }
    let centre: Float32Array;
    {
      using plain = Index.open(path);
      centre = plain.centre();
    }
    assertThrows(() => Index.open(path, { storage: "i8", centre: Float32Array.from(centre, (c) => c + 0.5) }), BusyError);
    assertThrows(() => Index.open(path, { centre: new Float32Array(d + 1) }), DimensionMismatchError);
    // A read-only open may name the centre it has (it cannot set one); another is BusyError.
    {
      using readOnly = Index.open(path, { readOnly: true, storage: "i8", centre });
      assertEquals(bitsOf(readOnly.centre()), bitsOf(centre), "the centre of a read-only open that named it");
    }
    assertThrows(() => Index.open(path, { readOnly: true, centre: Float32Array.from(centre, (c) => c + 0.5) }), BusyError);
    // The storage named on open must be the file's (it is not converted, and not ignored).
    assertThrows(() => Index.open(path, { storage: "f32" }), InvalidArgumentError);
    assertThrows(() => Index.open(path, { storage: "f16" }), InvalidArgumentError);
    using same = Index.open(path, { storage: "i8", centre, validate: "full" });
    assertEquals(bitsOf(same.centre()), bitsOf(centre), "the centre after a rejected reopen");
    assertEquals(same.size, 500);
    assert(same.verify().ok, "verify after a rejected reopen");
    same.add(77_777n, row(data, 600));
    assertEquals(same.search(row(data, 600), 1).keys[0], 77_777n, "an add after a rejected reopen");
  } finally {
    removeDir(dir);
  }
});

// ---------------------------------------------------------------------------------------------
// Persistence, snapshots and backups, compaction, upserts.

test("quantized: an i8 index reopens (fast and full validation) with the same centre, vectors, results and distances", () => {
  const dir = tempDir();
  try {
    const path = `${dir}/index`;
    const data = dataFor("cosine");
    const queries = queriesFor("cosine");
    let before;
    let centre;
    {
      using index = Index.open(path, { dimensions: d, metric: "cosine", storage: "i8" });
      index.add(allKeys.subarray(0, 3000), data.subarray(0, 3000 * d), { threads: 2 });
      for (let i = 0; i < 200; i++) index.add(BigInt(i * 11), row(data, 3000 + i)); // upserts
      for (let i = 0; i < 300; i++) assert(index.remove(BigInt(i * 7 + 3)), "remove of a live key");
      before = image(index, queries);
      centre = index.centre();
      assertEquals(before.keys.length, 2700);
      assertNear(centre, meanOf(data, 3000, true), 2e-5, "the trained centre");
    }
    for (const validate of ["fast", "full"] as const) {
      using reopened = Index.open(path, { validate });
      assertSameImage(image(reopened, queries), before, `reopen (${validate})`);
      assert(reopened.verify().ok, `verify after the reopen (${validate})`);
    }
    {
      using readOnly = Index.open(path, { readOnly: true });
      assertSameImage(image(readOnly, queries), before, "read-only reopen");
    }
    // The creating options again, now with the centre: accepted; and writes go on around it.
    using writable = Index.open(path, { dimensions: d, metric: "cosine", storage: "i8", centre });
    writable.add(123_456n, row(data, 3500));
    assertEquals(writable.search(row(data, 3500), 1).keys[0], 123_456n, "an add after the reopen");
    assertEquals(bitsOf(writable.centre()), before.centre, "the centre after an add");
  } finally {
    removeDir(dir);
  }
});

test("quantized: snapshot().save() and backup() of an i8 index reopen with its centre and its results", () => {
  const dir = tempDir();
  try {
    const data = dataFor("l2");
    const queries = queriesFor("l2");
    using index = new Index({ dimensions: d, storage: "i8" });
    index.add(allKeys.subarray(0, 3000), data.subarray(0, 3000 * d), { threads: 2 });
    const centre = index.centre();
    const model = new Map<bigint, Float32Array>();
    for (let i = 0; i < 3000; i++) model.set(BigInt(i), row(data, i));
    const snapshot = index.snapshot();
    const atSnapshot = {
      batch: snapshot.searchBatch(queries, k, { ef: 64 }),
      keys: [...snapshot.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
    };
    // Writes after the snapshot: adds, upserts, removes; the snapshot must not see them.
    index.add(allKeys.subarray(3000, 3500), data.subarray(3000 * d, 3500 * d));
    for (let i = 0; i < 300; i++) index.add(BigInt(i), row(data, 3500 + i));
    for (let i = 300; i < 600; i++) index.remove(BigInt(i));
    snapshot.save(`${dir}/snap`);
    snapshot.release();
    index.backup(`${dir}/backup`);
    const live = image(index, queries);

    {
      using saved = Index.open(`${dir}/snap`, { validate: "full" });
      assertEquals([saved.stats().storage, saved.stats().centre_set], [2, 1], "saved snapshot: storage and centre_set");
      assertEquals(bitsOf(saved.centre()), bitsOf(centre), "saved snapshot: centre");
      const keys = [...saved.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      assertEquals(keys, atSnapshot.keys, "saved snapshot: keys");
      for (const [key, vector] of model) assert(sameVector(saved.get(key), vector), `saved snapshot: vector of ${key}`);
      assert(saved.verify().ok, "saved snapshot: verify");
      // The saved graph holds only the snapshot's nodes, while the snapshot walked the live graph
      // (with the nodes added since): results may differ, but not in recall, and a key both
      // return has the same (exact) distance, bit for bit.
      const batch = saved.searchBatch(queries, k, { ef: 64 });
      const truth = bruteForce("l2", data, queries, [...model.keys()].map(Number));
      const recall = recallOf(batch, truth, "saved snapshot");
      const snapshotRecall = recallOf(atSnapshot.batch, truth, "snapshot");
      assert(recall >= minRecall && recall >= snapshotRecall - maxLoss, `saved snapshot: recall ${recall}, the snapshot's ${snapshotRecall}`);
      let common = 0;
      for (let q = 0; q < queryCount; q++) {
        const before = new Map<bigint, number>();
        for (let i = q * k; i < (q + 1) * k; i++) before.set(atSnapshot.batch.keys[i], atSnapshot.batch.distances[i]);
        for (let i = q * k; i < (q + 1) * k; i++) {
          const key = batch.keys[i];
          assert(model.has(key), `saved snapshot: query ${q} returned ${key}, which the snapshot does not hold`);
          if (!before.has(key)) continue;
          assert(Object.is(before.get(key), batch.distances[i]), `saved snapshot: query ${q}, key ${key}: ${batch.distances[i]}, snapshot ${before.get(key)}`);
          common++;
        }
      }
      assert(common >= 0.95 * queryCount * k, `saved snapshot: only ${common} results in common with the snapshot's`);
      // It is a writable index whose centre is final: an add does not re-train it.
      saved.add(999_999n, new Float32Array(d).fill(-5));
      assertEquals(bitsOf(saved.centre()), bitsOf(centre), "saved snapshot: centre after an add");
    }
    {
      using backup = Index.open(`${dir}/backup`, { validate: "full" });
      assertSameImage(image(backup, queries), live, "backup");
      assert(backup.verify().ok, "backup: verify");
    }
  } finally {
    removeDir(dir);
  }
});

test("quantized: compact() of an i8 index with removes and upserts keeps every live key, vector and the recall", () => {
  const data = dataFor("l2");
  const queries = queriesFor("l2");
  using index = new Index({ dimensions: d, storage: "i8" });
  index.add(allKeys, data, { threads: 2 });
  // Upserts move keys 0..399 onto the vectors of keys 3600..3999 (which are removed), and a
  // seeded 30% of the rest is removed.
  const model = new Map<number, number>(); // key -> row of its vector
  for (let i = 0; i < n; i++) model.set(i, i);
  for (let i = 0; i < 400; i++) {
    index.add(BigInt(i), row(data, 3600 + i));
    model.set(i, 3600 + i);
    assert(index.remove(BigInt(3600 + i)), `remove(${3600 + i})`);
    model.delete(3600 + i);
  }
  const random = rng(seed ^ 0xc0);
  for (let removed = 0; removed < 1000;) {
    const key = 400 + Math.floor(random() * 3200);
    if (!model.has(key)) continue;
    assert(index.remove(BigInt(key)), `remove(${key})`);
    model.delete(key);
    removed++;
  }
  const live = model.size;
  assertEquals(index.stats().tombstones, n + 400 - live);
  index.compact({ threads: 2 });
  const stats = index.stats();
  assertEquals([stats.size, stats.slots_used, stats.tombstones, stats.storage, stats.centre_set], [live, live, 0, 2, 1], "stats after compact");
  assert(index.verify().ok, "verify after compact");
  const keys = [...index.keys()].map(Number).sort((a, b) => a - b);
  assertEquals(keys, [...model.keys()].sort((a, b) => a - b), "live keys after compact");
  for (const [key, r] of model) assert(sameVector(index.get(key), row(data, r)), `vector of ${key} after compact`);
  // Recall against the live vectors, by row (keys 0..399 hold rows 3600..3999).
  const truth = bruteForce("l2", data, queries, model.values());
  const result = index.searchBatch(queries, k, { threads: 2 });
  const byRow = { ...result, keys: result.keys.map((key) => BigInt(model.get(Number(key))!)) };
  const recall = recallOf(byRow, truth, "after compact");
  assert(recall >= minRecall, `recall@10 after compact ${recall} < ${minRecall}`);
  // Every live vector finds its own key at distance 0, but for the few nodes a parallel build
  // can leave without an in-link (f32 and f16 lose as many: 2-4 of 2600 here).
  const liveEntries = [...model.entries()];
  const selfQueries = new Float32Array(liveEntries.length * d);
  liveEntries.forEach(([, r], i) => selfQueries.set(row(data, r), i * d));
  const self = index.searchBatch(selfQueries, 1, { threads: 2 });
  const hits = liveEntries.filter(([key], i) => self.keys[i] === BigInt(key) && Object.is(self.distances[i], 0)).length;
  assert(hits >= 0.995 * live, `self-recall after compact ${hits}/${live}`);
});

test("quantized: compact() keeps the i8 centre (a given one survives; the creating options reopen it)", () => {
  const problems: string[] = [];
  const given = Float32Array.from({ length: d }, (_, j) => offset - 2 + (j % 5));
  // Compaction to an empty index: the centre must stay the given one, and be reported set.
  {
    using index = new Index({ dimensions: d, storage: "i8", centre: given });
    index.add(1, row(rows, 1));
    index.remove(1);
    index.compact();
    if (!sameVector(index.centre(), given)) problems.push(`empty compaction: centre() is ${index.centre().slice(0, 4)}..., not the given centre`);
    if (index.stats().centre_set !== 1) problems.push("empty compaction: centre_set is not 1");
  }
  const dir = tempDir();
  try {
    const path = `${dir}/index`;
    {
      using index = Index.open(path, { dimensions: d, storage: "i8", centre: given });
      index.add(allKeys.subarray(0, 2000), rows.subarray(0, 2000 * d), { threads: 2 });
      for (let i = 0; i < 500; i++) index.remove(BigInt(i * 3));
      index.compact();
      if (!sameVector(index.centre(), given)) problems.push(`compaction: centre() is ${index.centre().slice(0, 4)}..., not the given ${given.slice(0, 4)}...`);
      assertEquals(index.size, 1500);
    }
    try {
      using reopened = Index.open(path, { dimensions: d, storage: "i8", centre: given });
      assertEquals(reopened.size, 1500);
    } catch (error) {
      problems.push(`reopening with the options that created the index: ${(error as Error).name}: ${(error as Error).message}`);
    }
  } finally {
    removeDir(dir);
  }
  assert(problems.length === 0, problems.join("\n"));
});

test("quantized: after upserts and removes every live vector finds its own key at distance 0; removed keys never return", () => {
  const data = dataFor("l2");
  const fresh = clustered(1000, d, seed + 1, 16).map((x) => x + offset);
  using index = new Index({ dimensions: d, storage: "i8" });
  index.add(allKeys.subarray(0, 3000), data.subarray(0, 3000 * d), { threads: 2 });
  const model = new Map<bigint, Float32Array>();
  for (let i = 0; i < 3000; i++) model.set(BigInt(i), row(data, i));
  const random = rng(seed ^ 0x5e1f);
  const removed = new Set<bigint>();
  for (let t = 0; t < 1000; t++) {
    const key = BigInt(Math.floor(random() * 3000));
    const choice = random();
    if (choice < 0.5) {
      const v = row(fresh, t);
      index.add(key, v); // upsert (or re-add of a removed key)
      model.set(key, v);
      removed.delete(key);
    } else if (model.has(key)) {
      assert(index.remove(key), `remove(${key})`);
      model.delete(key);
      removed.add(key);
    }
  }
  assertEquals(index.size, model.size);
  assert(index.verify().ok, "verify");
  let hits = 0;
  const queries = new Float32Array(model.size * d);
  const order = [...model.keys()];
  order.forEach((key, i) => queries.set(model.get(key)!, i * d));
  const result = index.searchBatch(queries, 10, { threads: 2 });
  for (let i = 0; i < order.length; i++) {
    const keys = result.keys.subarray(i * 10, (i + 1) * 10);
    for (const key of keys) assert(!removed.has(key), `removed key ${key} returned`);
    if (keys[0] === order[i] && Object.is(result.distances[i * 10], 0)) hits++;
    assert(sameVector(index.get(order[i]), model.get(order[i])), `vector of ${order[i]}`);
  }
  console.log(`quantized: self-recall after upserts and removes: ${hits}/${order.length} (${removed.size} keys removed)`);
  assert(hits >= 0.995 * order.length, `self-recall ${hits}/${order.length}`);
  for (const key of [...removed].slice(0, 50)) assertEquals(index.get(key), undefined, `get(${key}) of a removed key`);
});
