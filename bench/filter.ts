// Filtered search on Fashion-MNIST (issue #11): the 10 class labels as a keyword field `cls`, a
// seeded uniform random number per vector as a number field `rnd`, and filters of 50%, 10%, 1%
// and 0.1% selectivity, against exact filtered ground truth (brute force here, cached in .cache/).
//
//   bun bench/filter.ts [--quick] [--base N] [--queries N] [--ef 16,32,...] [--runs 3]
//                       [--sizes 15000,30000,60000] [--no-hnswlib] [--no-crossover] [--no-uniform]
//
// In one process and one run, for each filter:
//   quiver-f32, quiver-i8   search(q, k, { ef, filter }) on an index with `indexes` and metadata
//   hnswlib-node            searchKnn(q, k, label => mask[label] === 1) (a JS predicate per node)
//   quiver-exact            search(q, k, { ef: 2^20, filter }): the native scanLimit is then
//                           above any match count, so Quiver scans its matches exactly
//   js-scan                 a JS loop over the matching ids (a precomputed id list), exact scores
// Also: metadata's cost on disk (backup() of an index with and without metadata, file by file),
// resident (RSS around each build), on unfiltered QPS (same data, same seed, with and without
// metadata); and walk against scan around native/index/records.zig's scanLimit, at 2-3 sizes,
// with the c that the timings suggest (matches^2 = c * ef * n).
//
// QPS is single-threaded (one query at a time from JS), best of --runs passes; passes are
// interleaved across the series so a load spike hits them alike. Output: tables, then one JSON
// object per line (also written to bench/results/filter-<label>.jsonl).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";
import { CACHE_DIR, FASHION_MNIST_DIR, loadDataset, REPO_ROOT, type Dataset } from "./data.ts";
import { Scorer } from "./score.ts";
import { readIdx } from "../formats.ts";
import { Index } from "../mod.ts";

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    base: { type: "string" },
    queries: { type: "string" },
    ef: { type: "string" },
    runs: { type: "string", default: "3" },
    sizes: { type: "string" },
    "js-queries": { type: "string" },
    "cross-queries": { type: "string" },
    "no-hnswlib": { type: "boolean", default: false },
    "no-crossover": { type: "boolean", default: false },
    "no-uniform": { type: "boolean", default: false },
    "build-threads": { type: "string", default: "2" },
    seed: { type: "string", default: "7" },
    clock: { type: "string", default: "cpu" },
    help: { type: "boolean", default: false },
  },
});
if (flags.help) {
  console.log("usage: bun bench/filter.ts [--quick] [--base N] [--queries N] [--ef 16,32,...] [--runs 3] [--sizes a,b,c] [--js-queries N] [--cross-queries N] [--no-hnswlib] [--no-crossover] [--build-threads 2] [--seed 7]");
  process.exit(0);
}

const quick = flags.quick!;
const K = 10;
const M = 16;
const EF_CONSTRUCTION = 200;
const EXACT_EF = 1 << 20; // limits.maxEfQuery: sqrt(4 * 2^20 * n) > n for every n here, so Quiver scans.
const base = Number(flags.base ?? (quick ? 20000 : 60000));
const queryCount = Number(flags.queries ?? (quick ? 200 : 500));
const efs = (flags.ef ?? (quick ? "16,64,256" : "16,32,64,128,256,512")).split(",").map(Number);
const runs = Number(flags.runs);
const jsQueries = Math.min(queryCount, Number(flags["js-queries"] ?? (quick ? 100 : 200)));
const crossQueries = Math.min(queryCount, Number(flags["cross-queries"] ?? (quick ? 100 : 300)));
const sizes = (flags.sizes ?? (quick ? `${base / 2},${base}` : "15000,30000,60000")).split(",").map(Number).filter((s) => s <= base);
const buildThreads = Number(flags["build-threads"]);
const seed = Number(flags.seed);
// "cpu" (default): a pass's time is this process's CPU time, which other work on a shared
// 2-core machine distorts far less than elapsed time; "wall": elapsed time. Both are recorded.
const clock = flags.clock as "cpu" | "wall";
if (clock !== "cpu" && clock !== "wall") throw new Error(`--clock ${clock}: expected cpu or wall`);

const note = (m: string) => process.stderr.write(`[${(performance.now() / 1000).toFixed(0)} s] ${m}\n`);
const load = () => loadavg().map((v) => v.toFixed(2)).join(" ");
const jsonLines: object[] = [];
const emit = (o: object) => jsonLines.push({ bench: "filter", ...o });

// ---- data, labels, the random field -------------------------------------------------------
const ds: Dataset = loadDataset({ kind: "fashion-mnist" }, base, queryCount);
const n = ds.baseCount, d = ds.dimensions, Q = ds.queryCount;
const labelsAll = readIdx(join(FASHION_MNIST_DIR, "train-labels-idx1-ubyte.gz")).data;
const cls = new Uint8Array(n);
for (let i = 0; i < n; i++) cls[i] = labelsAll[i];
/** mulberry32: a seeded uniform [0, 1) per vector, the same for every run with --seed. */
function mulberry32(a: number): () => number {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = mulberry32(seed);
const rnd = new Float64Array(n);
for (let i = 0; i < n; i++) rnd[i] = random();
const scorer = new Scorer(ds, "l2");

interface FilterCase { name: string; target: string; filter: object; test: (i: number) => boolean }
const C = 3; // "Dress": any class would do (Fashion-MNIST's train set has 6000 of each).
const MAIN: FilterCase[] = [
  { name: "cls in {0..4}", target: "50%", filter: { cls: { $in: ["0", "1", "2", "3", "4"] } }, test: (i) => cls[i] < 5 },
  { name: `cls == ${C}`, target: "10%", filter: { cls: String(C) }, test: (i) => cls[i] === C },
  { name: `cls == ${C} AND rnd < 0.1`, target: "1%", filter: { $and: [{ cls: String(C) }, { rnd: { $lt: 0.1 } }] }, test: (i) => cls[i] === C && rnd[i] < 0.1 },
  { name: "rnd < 0.001", target: "0.1%", filter: { rnd: { $lt: 0.001 } }, test: (i) => rnd[i] < 0.001 },
  // The same selectivities with filters uncorrelated with the vectors (the class filters are
  // correlated: a query of another class has its filtered neighbours far away in the graph).
  ...(flags["no-uniform"] ? [] : [
    { name: "rnd < 0.5", target: "50%u", filter: { rnd: { $lt: 0.5 } }, test: (i: number) => rnd[i] < 0.5 },
    { name: "rnd < 0.1", target: "10%u", filter: { rnd: { $lt: 0.1 } }, test: (i: number) => rnd[i] < 0.1 },
    { name: "rnd < 0.01", target: "1%u", filter: { rnd: { $lt: 0.01 } }, test: (i: number) => rnd[i] < 0.01 },
  ]),
];

interface Prepared extends FilterCase { ids: Int32Array; mask: Uint8Array; matches: number }
function prepare(f: FilterCase, size: number): Prepared {
  const mask = new Uint8Array(size);
  const list: number[] = [];
  for (let i = 0; i < size; i++) if (f.test(i)) { mask[i] = 1; list.push(i); }
  return { ...f, ids: Int32Array.from(list), mask, matches: list.length };
}

// ---- exact filtered scan (JS): the ground truth, and the js-scan series --------------------
/** The exact k nearest of `ids` to query q: ids into outIds[at..], scores into outScores[at..]. */
function jsScan(q: number, ids: Int32Array, outIds: Int32Array, outScores: Float64Array, at: number): number {
  const qo = q * d, qs = ds.queries, b = ds.base, bn = scorer.baseNorms, qn = scorer.queryNorms[q];
  const bestS = new Float64Array(K).fill(Infinity), bestI = new Int32Array(K).fill(-1);
  let have = 0;
  for (let j = 0; j < ids.length; j++) {
    const id = ids[j], bo = id * d;
    let dot = 0;
    for (let t = 0; t < d; t++) dot += qs[qo + t] * b[bo + t];
    const s = qn + bn[id] - 2 * dot;
    if (have === K && !(s < bestS[K - 1])) continue;
    let p = have < K ? have++ : K - 1;
    while (p > 0 && bestS[p - 1] > s) { bestS[p] = bestS[p - 1]; bestI[p] = bestI[p - 1]; p--; }
    bestS[p] = s; bestI[p] = id;
  }
  outIds.set(bestI, at);
  outScores.set(bestS, at);
  return have;
}

interface Truth { ids: Int32Array; scores: Float64Array }
function groundTruth(f: Prepared): Truth {
  const key = `filter-gt-fashion-n${n}-q${Q}-s${seed}-${f.name.replace(/[^a-z0-9.]+/gi, "_")}.bin`;
  const path = join(CACHE_DIR, key);
  if (existsSync(path)) {
    const bytes = readFileSync(path);
    const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    return { scores: new Float64Array(buf, 0, Q * K), ids: new Int32Array(buf, Q * K * 8, Q * K) };
  }
  const start = performance.now();
  const buf = new ArrayBuffer(Q * K * 12);
  const t: Truth = { scores: new Float64Array(buf, 0, Q * K), ids: new Int32Array(buf, Q * K * 8, Q * K) };
  for (let q = 0; q < Q; q++) jsScan(q, f.ids, t.ids, t.scores, q * K);
  mkdirSync(CACHE_DIR, { recursive: true });
  writeFileSync(path, new Uint8Array(buf));
  note(`ground truth of "${f.name}" (${f.matches} matches): ${((performance.now() - start) / 1000).toFixed(1)} s, cached in ${path}`);
  return t;
}

/**
 * recall@k of one query: results whose exact score is at most the k-th true score (ties at the
 * k-th distance count: Fashion-MNIST's integer pixels make equal distances common), over
 * min(k, matches).
 */
function recallOf(q: number, got: ArrayLike<number>, count: number, truth: Truth | { kth: (q: number) => number }, matches: number): number {
  const want = Math.min(K, matches);
  if (want === 0) return 1;
  const kth = "kth" in truth ? truth.kth(q) : truth.scores[q * K + want - 1];
  let hit = 0;
  for (let i = 0; i < count; i++) if (scorer.score(q, got[i]) <= kth) hit++;
  return Math.min(hit, want) / want;
}

// ---- memory --------------------------------------------------------------------------------
/** Process memory in MiB after a full collection: VmRSS, and RssAnon + RssFile + Shmem (an in-memory index lives in memfds). */
async function memory(): Promise<{ rss: number; held: number }> {
  Bun.gc(true);
  await Bun.sleep(200);
  const field = (text: string, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  const status = readFileSync("/proc/self/status", "utf8");
  const meminfo = readFileSync("/proc/meminfo", "utf8");
  return { rss: field(status, "VmRSS") / 1024, held: (field(status, "RssAnon") + field(status, "RssFile") + field(meminfo, "Shmem")) / 1024 };
}

// ---- the indexes ----------------------------------------------------------------------------
const keys = (count: number) => {
  const out = new BigUint64Array(count);
  for (let i = 0; i < count; i++) out[i] = BigInt(i);
  return out;
};
const metadataOf = (count: number) => Array.from({ length: count }, (_, i) => ({ cls: String(cls[i]), rnd: rnd[i] }));

function buildQuiver(storage: "f32" | "i8", withMetadata: boolean, count = n): { index: Index; seconds: number } {
  const index = new Index({
    dimensions: d, metric: "l2", m: M, efConstruction: EF_CONSTRUCTION, ef: 64, seed: 42, storage,
    ...(withMetadata ? { indexes: { cls: "keyword", rnd: "number" } } : {}),
  });
  index.reserve(count);
  const metadata = withMetadata ? metadataOf(count) : undefined;
  const start = performance.now();
  index.add(keys(count), ds.base.subarray(0, count * d), { threads: buildThreads, ...(metadata ? { metadata } : {}) });
  return { index, seconds: (performance.now() - start) / 1000 };
}

interface Hnsw {
  initIndex(maxElements: number, m?: number, efConstruction?: number, randomSeed?: number): void;
  addPoint(point: number[], label: number): void;
  searchKnn(query: number[], k: number, filter?: (label: number) => boolean): { distances: number[]; neighbors: number[] };
  setEf(ef: number): void;
}
function buildHnswlib(): { index: Hnsw; seconds: number } | undefined {
  if (flags["no-hnswlib"]) return undefined;
  let addon: { HierarchicalNSW: new (space: string, dim: number) => Hnsw };
  try {
    addon = createRequire(join(REPO_ROOT, "bench", "peers", "package.json"))("hnswlib-node");
  } catch (error) {
    note(`hnswlib-node does not load (${(error as Error).message}): run scripts/setup-bench.sh; skipping it`);
    return undefined;
  }
  const index = new addon.HierarchicalNSW("l2", d);
  const start = performance.now();
  index.initIndex(n, M, EF_CONSTRUCTION, 42);
  for (let i = 0; i < n; i++) index.addPoint(Array.from(ds.base.subarray(i * d, (i + 1) * d)), i);
  return { index, seconds: (performance.now() - start) / 1000 };
}

function dirBytes(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of readdirSync(dir)) out[name.replace(/^idx/, "") || "(main)"] = statSync(join(dir, name)).size;
  return out;
}

// ---- timing ---------------------------------------------------------------------------------
/** One series: searches query q, writing ids into out[at..]; returns how many it found. */
type Searcher = (q: number, out: Float64Array, at: number) => number;
interface Series { name: string; search: Searcher; queries: number; best: number; bestWall: number; share: number; recall: number; short: number; mean: number }

/**
 * Best-of-`runs` single-threaded QPS for each series, passes interleaved; then recall and short
 * results. A series runs on the first `queries` queries, cut to what fits in PASS_BUDGET seconds
 * (at least MIN_QUERIES; hnswlib's filtered walks at 0.1% take tens of ms each), and a fast one
 * repeats them until a pass lasts MIN_PASS seconds, so the timer sees no sub-millisecond pass.
 */
const PASS_BUDGET = quick ? 1 : 2;
const MIN_PASS = 0.25;
const MIN_QUERIES = 30;
function timeSeries(series: Series[], truth: Truth | { kth: (q: number) => number }, matches: number, warm = 20): void {
  const outs = series.map((s) => ({ ids: new Float64Array(s.queries * K), counts: new Uint32Array(s.queries), reps: 1 }));
  for (const [i, s] of series.entries()) {
    const w = Math.min(warm, s.queries);
    const start = performance.now();
    for (let q = 0; q < w; q++) s.search(q, outs[i].ids, q * K);
    const per = Math.max((performance.now() - start) / 1000 / w, 1e-7);
    s.queries = Math.min(s.queries, Math.max(MIN_QUERIES, Math.floor(PASS_BUDGET / per)));
    outs[i].reps = Math.max(1, Math.ceil(MIN_PASS / (per * s.queries)));
  }
  for (let run = 0; run < runs; run++) {
    for (const [i, s] of series.entries()) {
      const { ids, counts, reps } = outs[i];
      const cpuStart = process.cpuUsage();
      const start = performance.now();
      for (let r = 0; r < reps; r++) for (let q = 0; q < s.queries; q++) counts[q] = s.search(q, ids, q * K);
      const wall = (performance.now() - start) / 1000 / reps;
      const used = process.cpuUsage(cpuStart);
      const cpu = (used.user + used.system) / 1e6 / reps;
      const t = clock === "cpu" ? cpu : wall;
      if (t < s.best) { s.best = t; s.share = cpu / wall; }
      s.bestWall = Math.min(s.bestWall, wall);
    }
  }
  for (const [i, s] of series.entries()) {
    const { ids, counts } = outs[i];
    let sum = 0, short = 0;
    for (let q = 0; q < s.queries; q++) {
      sum += recallOf(q, ids.subarray(q * K), counts[q], truth, matches);
      if (counts[q] < Math.min(K, matches)) short++;
    }
    s.recall = sum / s.queries;
    s.short = short;
    s.mean = s.best / s.queries;
  }
}
const fresh = (name: string, search: Searcher, queries = Q): Series => ({ name, search, queries, best: Infinity, bestWall: Infinity, share: 0, recall: 0, short: 0, mean: 0 });

const qvSearcher = (index: Index, ef: number, filter?: object): Searcher => {
  const options = filter === undefined ? { ef } : { ef, filter };
  return (q, out, at) => {
    const r = index.search(ds.queries.subarray(q * d, (q + 1) * d), K, options);
    for (let i = 0; i < r.keys.length; i++) out[at + i] = Number(r.keys[i]);
    return r.keys.length;
  };
};

// ================================================================================================
const startedAt = new Date().toISOString();
const loadStart = load();
note(`fashion-mnist: ${n} x ${d}, ${Q} queries; efs ${efs.join(",")}; best of ${runs}; load ${loadStart}`);
const prepared = MAIN.map((f) => prepare(f, n));
const truths = prepared.map(groundTruth);
const machine = `${cpus()[0]?.model ?? "?"}, ${cpus().length} cores`;

// -- builds and memory --
const mem0 = await memory();
const plain = buildQuiver("f32", false);
const mem1 = await memory();
const meta = buildQuiver("f32", true);
const mem2 = await memory();
note(`built quiver f32 without metadata in ${plain.seconds.toFixed(1)} s, with in ${meta.seconds.toFixed(1)} s`);
const i8 = buildQuiver("i8", true);
note(`built quiver i8 with metadata in ${i8.seconds.toFixed(1)} s`);
const hnsw = buildHnswlib();
if (hnsw) note(`built hnswlib-node in ${hnsw.seconds.toFixed(1)} s (1 thread)`);
const hnswQueries = Array.from({ length: Q }, (_, q) => Array.from(ds.queries.subarray(q * d, (q + 1) * d)));

// -- metadata on disk: backup() writes each index as a persistent one --
const tmp = mkdtempSync(join(tmpdir(), "quiver-fbench-"));
const disk: Record<string, Record<string, number>> = {};
for (const [label, index] of [["without", plain.index], ["with", meta.index]] as const) {
  mkdirSync(join(tmp, label));
  index.backup(join(tmp, label, "idx"));
  disk[label] = dirBytes(join(tmp, label));
}
rmSync(tmp, { recursive: true, force: true });
const total = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
const metaStats = meta.index.stats();

console.log(`\nFiltered search, Fashion-MNIST ${n} x ${d} (l2), ${Q} queries, k=${K}; M=${M}, efConstruction=${EF_CONSTRUCTION}; ${quick ? "--quick" : "full"} run, started ${startedAt}`);
console.log(`machine: ${machine}; bun ${Bun.version}; Quiver builds on ${buildThreads} threads, hnswlib-node on 1; QPS single-threaded, best of ${runs} interleaved passes, clock: ${clock} (process ${clock === "cpu" ? "CPU" : "elapsed"} time)`);
console.log(`cells: QPS (recall@10) [queries short of k results though >= k match] Nq (when timed on the first N queries only)`);
console.log(`filters (field cls: keyword, the class label; rnd: number, mulberry32(seed ${seed}) in [0, 1)):`);
for (const f of prepared) console.log(`  ${f.target.padStart(5)}  ${f.name.padEnd(26)} ${JSON.stringify(f.filter).padEnd(58)} ${f.matches} matches (${(100 * f.matches / n).toFixed(2)}%)`);

console.log(`\n== metadata cost (load ${load()}) ==`);
const files = [...new Set([...Object.keys(disk.without), ...Object.keys(disk.with)])].sort();
console.log(`  on disk (backup() of each index, bytes): ${files.map((f) => `${f}: ${disk.without[f] ?? 0} -> ${disk.with[f] ?? 0}`).join("; ")}`);
const diskPer = (total(disk.with) - total(disk.without)) / n;
console.log(`  on disk total: ${total(disk.without)} -> ${total(disk.with)} bytes: +${diskPer.toFixed(1)} bytes per record (metadata {cls, rnd}: ${(JSON.stringify(metadataOf(1)[0]).length)} bytes of JSON for record 0; native record_bytes ${metaStats.record_bytes} = ${(metaStats.record_bytes / n).toFixed(1)} per record)`);
const rssPlain = mem1.held - mem0.held, rssMeta = mem2.held - mem1.held;
const vmPlain = mem1.rss - mem0.rss, vmMeta = mem2.rss - mem1.rss;
console.log(`  resident (after a full GC; RssAnon+RssFile+Shmem, VmRSS in brackets): index without metadata +${rssPlain.toFixed(1)} MiB [${vmPlain.toFixed(1)}], with +${rssMeta.toFixed(1)} MiB [${vmMeta.toFixed(1)}]: +${((rssMeta - rssPlain) * 1048576 / n).toFixed(0)} bytes per record [${((vmMeta - vmPlain) * 1048576 / n).toFixed(0)}]`);
emit({ section: "metadata", n, disk_without: disk.without, disk_with: disk.with, disk_bytes_per_record: +diskPer.toFixed(1), record_bytes: metaStats.record_bytes, rss_without_mib: +rssPlain.toFixed(1), rss_with_mib: +rssMeta.toFixed(1), rss_bytes_per_record: Math.round((rssMeta - rssPlain) * 1048576 / n), vmrss_bytes_per_record: Math.round((vmMeta - vmPlain) * 1048576 / n), build_s_without: +plain.seconds.toFixed(2), build_s_with: +meta.seconds.toFixed(2), load: load() });

// -- unfiltered QPS with and without metadata --
{
  const all = prepare({ name: "none", target: "100%", filter: {}, test: () => true }, n);
  const gt = groundTruth(all);
  const loadBefore = load();
  console.log(`\n== unfiltered search: the same f32 index built with and without metadata (load ${loadBefore}) ==`);
  console.log(`  ${"ef".padStart(5)} ${"no metadata".padStart(20)} ${"with metadata".padStart(20)} ${"ratio".padStart(7)}`);
  for (const ef of efs) {
    const s = [fresh("quiver-f32", qvSearcher(plain.index, ef)), fresh("quiver-f32+meta", qvSearcher(meta.index, ef))];
    timeSeries(s, gt, n);
    console.log(`  ${String(ef).padStart(5)} ${`${(1 / s[0].mean).toFixed(0)} (${s[0].recall.toFixed(4)})`.padStart(20)} ${`${(1 / s[1].mean).toFixed(0)} (${s[1].recall.toFixed(4)})`.padStart(20)} ${(s[0].mean / s[1].mean).toFixed(3).padStart(7)}`);
    for (const x of s) emit({ section: "unfiltered", series: x.name, ef, recall: +x.recall.toFixed(4), queries: x.queries, qps: Math.round(1 / x.mean), qps_wall: Math.round(x.queries / x.bestWall), cpu_share: +x.share.toFixed(2), clock });
  }
  console.log(`  (QPS (recall@10); ratio = QPS with / QPS without; load ${loadBefore} before, ${load()} after)`);
}
plain.index.close();

// -- filtered: every series at every selectivity --
console.log(`\n== filtered search: QPS (recall@10) [queries with fewer than k results though >= k match] ==`);
const summary: string[] = [];
for (const [fi, f] of prepared.entries()) {
  const truth = truths[fi];
  const loadBefore = load();
  console.log(`\n-- ${f.target}: ${f.name}, ${f.matches} matches (load ${loadBefore}) --`);
  const exact: Series[] = [
    fresh("quiver-exact", qvSearcher(meta.index, EXACT_EF, f.filter)),
    fresh("js-scan", (() => { const ids = new Int32Array(K), sc = new Float64Array(K); return (q: number, out: Float64Array, at: number) => { const c = jsScan(q, f.ids, ids, sc, 0); for (let i = 0; i < c; i++) out[at + i] = ids[i]; return c; }; })(), jsQueries),
  ];
  timeSeries(exact, truth, f.matches, 5);
  const cell = (s: Series) => `${(1 / s.mean).toFixed(0)} (${s.recall.toFixed(3)})${s.short ? ` [${s.short}]` : ""}${s.queries < Q ? ` ${s.queries}q` : ""}`;
  console.log(`  exact: quiver scan (ef 2^20) ${cell(exact[0])}; js scan ${cell(exact[1])}`);
  for (const s of exact) emit({ section: "filtered", filter: f.name, target: f.target, matches: f.matches, series: s.name, ef: null, queries: s.queries, recall: +s.recall.toFixed(4), qps: Math.round(1 / s.mean), qps_wall: Math.round(s.queries / s.bestWall), cpu_share: +s.share.toFixed(2), clock, short: s.short });
  console.log(`  ${"ef".padStart(5)} ${"quiver-f32".padStart(22)} ${"quiver-i8".padStart(22)} ${"hnswlib-node filter".padStart(22)}`);
  const best: Record<string, number> = {};
  for (const ef of efs) {
    const s = [fresh("quiver-f32", qvSearcher(meta.index, ef, f.filter)), fresh("quiver-i8", qvSearcher(i8.index, ef, f.filter))];
    if (hnsw) {
      const mask = f.mask;
      const predicate = (label: number) => mask[label] === 1;
      hnsw.index.setEf(ef);
      s.push(fresh("hnswlib-node", (q, out, at) => {
        let r;
        try {
          r = hnsw.index.searchKnn(hnswQueries[q], K, predicate);
        } catch {
          return 0; // hnswlib throws when it finds fewer than k: counted as short.
        }
        for (let i = 0; i < r.neighbors.length; i++) out[at + i] = r.neighbors[i];
        return r.neighbors.length;
      }));
    }
    timeSeries(s, truth, f.matches);
    console.log(`  ${String(ef).padStart(5)} ${s.map((x) => cell(x).padStart(22)).join(" ")}`);
    for (const x of s) {
      emit({ section: "filtered", filter: f.name, target: f.target, matches: f.matches, series: x.name, ef, queries: x.queries, recall: +x.recall.toFixed(4), qps: Math.round(1 / x.mean), qps_wall: Math.round(x.queries / x.bestWall), cpu_share: +x.share.toFixed(2), clock, short: x.short });
      if (x.recall >= 0.95) best[x.name] = Math.max(best[x.name] ?? 0, 1 / x.mean);
    }
  }
  const show = (name: string) => (best[name] ? best[name].toFixed(0) : "-");
  summary.push(`  ${f.target.padStart(5)} ${String(f.matches).padStart(7)} ${show("quiver-f32").padStart(11)} ${show("quiver-i8").padStart(11)} ${show("hnswlib-node").padStart(13)} ${(1 / exact[0].mean).toFixed(0).padStart(12)} ${(1 / exact[1].mean).toFixed(0).padStart(9)}`);
  console.log(`  (load ${loadBefore} before, ${load()} after)`);
}
console.log(`\n== best single-threaded QPS at recall@10 >= 0.95 (exact series: recall 1) (load ${load()}) ==`);
console.log(`  ${"sel".padStart(5)} ${"matches".padStart(7)} ${"quiver-f32".padStart(11)} ${"quiver-i8".padStart(11)} ${"hnswlib-node".padStart(13)} ${"quiver-exact".padStart(12)} ${"js-scan".padStart(9)}`);
for (const line of summary) console.log(line);
i8.index.close();
meta.index.close();

// -- walk against scan around scanLimit --
if (!flags["no-crossover"]) {
  console.log(`\n== walk against scan around scanLimit (native/index/records.zig: walk when matches > sqrt(4 * ef * n)) ==`);
  console.log(`  filters rnd < s (uncorrelated with the vectors); ${crossQueries} queries; walk = search with this ef (the native choice, shown), scan = search with ef 2^20`);
  const fractions = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5];
  const crossEfs = [16, 32, 64, 128];
  const allPoints: { size: number; x: number; ratio: number }[] = [];
  for (const size of sizes) {
    const loadBefore = load();
    const built = buildQuiver("f32", true, size);
    const index = built.index;
    console.log(`\n  n = ${size} (built in ${built.seconds.toFixed(1)} s; load ${loadBefore})`);
    console.log(`  ${"s".padStart(5)} ${"matches".padStart(7)} ${"scan µs".padStart(8)} ${crossEfs.map((ef) => `ef ${ef}: walk µs, rec, walk/scan`.padStart(34)).join("")}`);
    for (const s of fractions) {
      const filter = { rnd: { $lt: s } };
      const matches = index.count(filter);
      // The scan's results are exact: its k-th exact score is the truth for the walks' recall.
      const scanIds = new Float64Array(crossQueries * K);
      const scanCounts = new Uint32Array(crossQueries);
      const exactSearch = qvSearcher(index, EXACT_EF, filter);
      for (let q = 0; q < crossQueries; q++) scanCounts[q] = exactSearch(q, scanIds, q * K);
      const kth = (q: number) => {
        let worst = -Infinity;
        for (let i = 0; i < scanCounts[q]; i++) worst = Math.max(worst, scorer.score(q, scanIds[q * K + i]));
        return worst;
      };
      const truth = { kth };
      const series = [fresh("scan", exactSearch, crossQueries)];
      const walked = crossEfs.filter((ef) => matches > Math.max(Math.sqrt(4 * ef * size), 2 * K));
      for (const ef of walked) series.push(fresh(`walk-${ef}`, qvSearcher(index, ef, filter), crossQueries));
      timeSeries(series, truth, matches, 10);
      const scan = series[0];
      const cells = crossEfs.map((ef) => {
        const w = series.find((x) => x.name === `walk-${ef}`);
        if (!w) return "(scanned natively)".padStart(34);
        const ratio = w.mean / scan.mean;
        const x = (matches * matches) / (ef * size);
        allPoints.push({ size, x, ratio });
        emit({ section: "crossover", n: size, s, matches, ef, scan_us: +(scan.mean * 1e6).toFixed(1), walk_us: +(w.mean * 1e6).toFixed(1), walk_recall: +w.recall.toFixed(4), walk_short: w.short, walk_over_scan: +ratio.toFixed(3), walk_over_scan_wall: +((w.bestWall / w.queries) / (scan.bestWall / scan.queries)).toFixed(3), clock, matches2_over_ef_n: +x.toFixed(2) });
        return `${(w.mean * 1e6).toFixed(0)}, ${w.recall.toFixed(3)}, ${ratio.toFixed(2)}`.padStart(34);
      });
      console.log(`  ${String(s).padStart(5)} ${String(matches).padStart(7)} ${(scan.mean * 1e6).toFixed(0).padStart(8)} ${cells.join("")}`);
      emit({ section: "crossover-scan", n: size, s, matches, scan_us: +(scan.mean * 1e6).toFixed(1), scan_recall: +scan.recall.toFixed(4) });
    }
    index.close();
    console.log(`  (load ${loadBefore} before, ${load()} after)`);
  }
  // Fit log(walk/scan) = a + b log(matches^2 / (ef n)); the walk and the scan cost the same at
  // x = exp(-a / b): that x is the c of matches^2 = c * ef * n.
  const fit = (pts: { x: number; ratio: number }[]) => {
    if (pts.length < 2) return NaN;
    const xs = pts.map((p) => Math.log(p.x)), ys = pts.map((p) => Math.log(p.ratio));
    const mx = xs.reduce((a, b) => a + b) / xs.length, my = ys.reduce((a, b) => a + b) / ys.length;
    let sxy = 0, sxx = 0;
    for (let i = 0; i < xs.length; i++) { sxy += (xs[i] - mx) * (ys[i] - my); sxx += (xs[i] - mx) ** 2; }
    const b = sxy / sxx, a = my - b * mx;
    return Math.exp(-a / b);
  };
  console.log(`\n  c suggested (fit of log(walk/scan) against log(matches^2/(ef n)) over the walked points; the walk is cheaper above it):`);
  for (const size of sizes) {
    const pts = allPoints.filter((p) => p.size === size);
    const c = fit(pts);
    console.log(`    n = ${size}: c = ${c.toFixed(2)} (${pts.length} points)`);
    emit({ section: "crossover-c", n: size, c: +c.toFixed(3), points: pts.length });
  }
  const cAll = fit(allPoints);
  console.log(`    all sizes: c = ${cAll.toFixed(2)} (the code has 4); load ${load()}`);
  emit({ section: "crossover-c", n: "all", c: +cAll.toFixed(3), points: allPoints.length });
}

console.log(`\nload average: ${loadStart} at the start, ${load()} at the end\n`);
for (const line of jsonLines) console.log(JSON.stringify(line));
mkdirSync(join(REPO_ROOT, "bench", "results"), { recursive: true });
writeFileSync(join(REPO_ROOT, "bench", "results", `filter-fashion-n${n}-q${Q}.jsonl`), jsonLines.map((l) => JSON.stringify(l)).join("\n") + "\n");
