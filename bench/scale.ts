// Scale and latency runs, not timed tests (BENCHMARKS.md records their output):
//   bun bench/scale.ts scale   [--n 1000000] [--d 128]   build with 2 threads, RSS, bytes on disk,
//                                                         open time of the persisted index, QPS at recall >= 0.95
//   bun bench/scale.ts latency [--n 10000]   [--d 768]   median single-query latency at recall >= 0.95
import { parseArgs } from "node:util";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { Index } from "../mod.ts";
import { loadDataset, parseDatasetSpec } from "./data.ts";
import { groundTruth } from "./groundtruth.ts";

const { values: flags, positionals } = parseArgs({
  args: Bun.argv.slice(2),
  allowPositionals: true,
  options: { n: { type: "string" }, d: { type: "string" }, queries: { type: "string", default: "1000" }, keep: { type: "boolean" } },
});
const mode = positionals[0] ?? "scale";
const n = Number(flags.n ?? (mode === "scale" ? 1_000_000 : 10_000));
const d = Number(flags.d ?? (mode === "scale" ? 128 : 768));
const nq = Number(flags.queries);
const k = 10;

const rssMb = () => process.memoryUsage().rss / 2 ** 20;
const ds = loadDataset(parseDatasetSpec(`clustered:${n}:${d}:${nq}`));
console.log(`${mode}: ${ds.name}: ${ds.baseCount} x ${d}, ${ds.queryCount} queries (machine: ${navigator.hardwareConcurrency} cores)`);
const truth = await groundTruth(ds, "l2", 2, k);

function recallAt(index: Index, ef: number): number {
  let hits = 0;
  for (let q = 0; q < ds.queryCount; q++) {
    const r = index.search(ds.queries.subarray(q * d, (q + 1) * d), k, { ef });
    const want = truth.ids.subarray(q * truth.k, q * truth.k + k);
    for (const key of r.keys) if (want.includes(Number(key))) hits++;
  }
  return hits / (ds.queryCount * k);
}

/** The smallest ef (of a sweep in steps of 15%) reaching the target recall. */
function efFor(index: Index, target: number): { ef: number; recall: number } {
  for (let ef = k; ef <= 1024; ef = Math.ceil(ef * 1.15)) {
    const recall = recallAt(index, ef);
    if (recall >= target) return { ef, recall };
  }
  throw new Error(`recall ${target} not reached by ef 1024`);
}

function timeQueries(index: Index, ef: number): number[] {
  const times: number[] = [];
  for (let q = 0; q < ds.queryCount; q++) {
    const query = ds.queries.subarray(q * d, (q + 1) * d);
    const t = Bun.nanoseconds();
    index.search(query, k, { ef });
    times.push((Bun.nanoseconds() - t) / 1000);
  }
  return times.sort((a, b) => a - b);
}

const keys = new BigUint64Array(ds.baseCount).map((_, i) => BigInt(i));
if (mode === "latency") {
  const index = new Index({ dimensions: d, m: 16, efConstruction: 200 });
  let t = performance.now();
  index.add(keys, ds.base, { threads: 2 });
  console.log(`build ${((performance.now() - t) / 1000).toFixed(2)} s (2 threads, M=16, efConstruction=200)`);
  const { ef, recall } = efFor(index, 0.95);
  timeQueries(index, ef); // warm-up
  const times = timeQueries(index, ef);
  const pct = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
  console.log(`ef=${ef}: recall@10 ${recall.toFixed(4)}; latency median ${pct(0.5).toFixed(1)} us, p90 ${pct(0.9).toFixed(1)} us, p99 ${pct(0.99).toFixed(1)} us`);
  index.close();
} else {
  const dir = mkdtempSync(join(process.env.TMPDIR ?? "/tmp", "quiver-scale-"));
  const path = join(dir, "scale.qv");
  const rss0 = rssMb();
  const index = Index.open(path, { dimensions: d, m: 16, efConstruction: 200, capacity: n });
  let t = performance.now();
  index.add(keys, ds.base, { threads: 2 });
  const build = (performance.now() - t) / 1000;
  index.checkpoint();
  const rss1 = rssMb();
  const { ef, recall } = efFor(index, 0.95);
  t = performance.now();
  for (let q = 0; q < ds.queryCount; q++) index.search(ds.queries.subarray(q * d, (q + 1) * d), k, { ef });
  const qps = ds.queryCount / ((performance.now() - t) / 1000);
  index.close();
  const bytes = readdirSync(dir).reduce((sum, f) => sum + statSync(join(dir, f)).blocks * 512, 0);
  console.log(`build ${build.toFixed(1)} s (2 threads, M=16, efConstruction=200); RSS after build +${(rss1 - rss0).toFixed(0)} MiB (vectors alone ${((n * d * 4) / 2 ** 20).toFixed(0)} MiB)`);
  console.log(`on disk ${(bytes / 2 ** 20).toFixed(0)} MiB (${(bytes / n).toFixed(0)} bytes per vector)`);
  console.log(`ef=${ef}: recall@10 ${recall.toFixed(4)}, ${qps.toFixed(0)} queries/s (1 thread)`);
  for (let i = 0; i < 3; i++) {
    t = performance.now();
    const reopened = Index.open(path);
    const openMs = performance.now() - t;
    const first = performance.now();
    reopened.search(ds.queries.subarray(0, d), k, { ef });
    console.log(`open ${openMs.toFixed(1)} ms (size ${reopened.size}); first search after open ${(performance.now() - first).toFixed(1)} ms`);
    reopened.close();
  }
  if (!flags.keep) rmSync(dir, { recursive: true, force: true });
}
