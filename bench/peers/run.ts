// One library's whole ANN run in its own process, so its RSS is its own. Started by bench/ann.ts
// with one JSON argument (a RunConfig); prints one JSON result per line on stdout and progress
// on stderr. Reads the data set and ground truth from .cache/ (ann.ts makes sure they exist).
import { readFileSync } from "node:fs";
import { loadDataset, parseDatasetSpec, type Dataset, type Metric } from "../data.ts";
import { readGroundTruth, recallAtK, type GroundTruth } from "../groundtruth.ts";
import { Scorer } from "../score.ts";
import type { Adapter, BuildParams, ExternalAdapter } from "./adapter.ts";

export const LIBRARIES = [
  "quiver", "quiver-f16", "quiver-i8", "quiver-i8-walk", "quiver-rabitq", "hnswlib-node", "hnswlib-node-native", "usearch",
  "faiss-hnsw", "faiss-hnsw-sq8", "scann",
] as const;
export type Library = (typeof LIBRARIES)[number];

export interface RunConfig {
  library: Library;
  dataset: string; // A --dataset spec, e.g. "fashion-mnist".
  label: string; // The "dataset" value written into results.
  baseLimit: number;
  queryLimit: number;
  metric: Metric;
  k: number;
  m: number;
  efConstruction: number;
  efs: number[];
  buildThreads: number;
  batchThreads: number;
  runs: number;
  seed: number;
  /** "wall" (default): QPS from elapsed time. "cpu": single-threaded QPS from this process's CPU
   * time, which a busy shared machine distorts less; batch figures always use wall time. */
  clock: "wall" | "cpu";
}

/** One line of `--json` output; the key set and order are fixed. */
export interface ResultLine {
  library: string;
  dataset: string;
  storage: string;
  M: number;
  efConstruction: number;
  ef: number;
  threads: number;
  build_s: number;
  recall: number;
  qps: number;
  rss_mb: number;
}

async function adapterFor(library: Library, params: BuildParams): Promise<Adapter | ExternalAdapter> {
  if (library === "quiver") return (await import("./quiver.ts")).create(params);
  if (library === "quiver-f16") return (await import("./quiver.ts")).create({ ...params, storage: "f16" });
  if (library === "quiver-i8") return (await import("./quiver.ts")).create({ ...params, storage: "i8" });
  // i8 walk codes plus the RaBitQ codes of each node's edges inline in its record.
  if (library === "quiver-rabitq") return (await import("./quiver.ts")).create({ ...params, storage: "rabitq" });
  // i8 ranked by its codes alone: no rerank, so the f32 vectors are never read by a search.
  if (library === "quiver-i8-walk") return (await import("./quiver.ts")).create({ ...params, storage: "i8", rerank: false });
  if (library === "hnswlib-node") return (await import("./hnswlib.ts")).create(params);
  // The same hnswlib-node sources compiled with -O3 -march=native into bench/peers/.hnswlib-native.
  if (library === "hnswlib-node-native") return (await import("./hnswlib.ts")).create(params, "native");
  if (library === "faiss-hnsw" || library === "faiss-hnsw-sq8" || library === "scann") {
    return (await import("./python.ts")).create(library, params);
  }
  return (await import("./usearch.ts")).create(params);
}

/**
 * Memory held, in MiB, after a full collection and a short pause for the allocator to return
 * freed pages: the process's anonymous and file-backed resident pages, plus the machine's shared
 * memory (/proc/meminfo Shmem) in place of the process's resident share of it. An in-memory
 * Quiver index lives in memfds (shared memory): a remap maps them afresh, so pages written
 * before it and not read since (f16/i8's exact vectors) are held but not in the process's RSS.
 * Counting Shmem counts them; the peers use no shared memory, so for them this is their RSS.
 * (Shmem is machine-wide: run on an otherwise idle machine.)
 */
async function rssMb(): Promise<number> {
  Bun.gc(true);
  await Bun.sleep(200);
  const field = (text: string, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  const status = readFileSync("/proc/self/status", "utf8");
  const meminfo = readFileSync("/proc/meminfo", "utf8");
  return (field(status, "RssAnon") + field(status, "RssFile") + field(meminfo, "Shmem")) / 1024;
}

function log(message: string): void {
  process.stderr.write(`  [${(performance.now() / 1000).toFixed(1)} s] ${message}\n`);
}

async function main(config: RunConfig): Promise<void> {
  const ds = loadDataset(parseDatasetSpec(config.dataset), config.baseLimit, config.queryLimit);
  const gt = readGroundTruth(ds, config.metric);
  if (!gt) throw new Error(`no cached ground truth for ${ds.name}/${config.metric}: run it through bench/ann.ts`);
  const scorer = new Scorer(ds, config.metric);
  const d = ds.dimensions;
  const adapter = await adapterFor(config.library, {
    dimensions: d, metric: config.metric, m: config.m, efConstruction: config.efConstruction,
    threads: config.buildThreads, seed: config.seed,
  });
  if ("external" in adapter) return runExternal(config, ds, gt, scorer, adapter);
  // RSS is taken right after loading, when nothing freshly freed sits in the allocator, and
  // again after a full collection once the build is done; query preparation comes later.
  const rssBefore = await rssMb();
  log(`${config.library}: building ${ds.baseCount} x ${d} (M=${config.m}, efConstruction=${config.efConstruction}, ${adapter.buildThreads} thread(s))`);
  const buildStart = performance.now();
  adapter.build(ds.base, ds.baseCount);
  const buildSeconds = (performance.now() - buildStart) / 1000;
  const rssIndex = (await rssMb()) - rssBefore;
  log(`${config.library}: built in ${buildSeconds.toFixed(2)} s, RSS +${rssIndex.toFixed(0)} MiB`);
  const queries = adapter.prepareQueries(ds.queries, ds.queryCount, d);
  process.stdout.write(`${JSON.stringify({ info: { library: adapter.library, build_threads: adapter.buildThreads } })}\n`);

  const k = config.k;
  const ids = new Float64Array(ds.queryCount * k);
  const counts = new Uint32Array(ds.queryCount);
  const emit = (ef: number, threads: number, recall: number, qps: number) => {
    const line: ResultLine = {
      library: adapter.library, dataset: config.label, storage: adapter.storage, M: config.m,
      efConstruction: config.efConstruction, ef, threads, build_s: round(buildSeconds, 3),
      recall: round(recall, 4), qps: round(qps, 1), rss_mb: round(rssIndex, 1),
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  };
  for (const ef of config.efs) {
    adapter.setEf(ef);
    const warm = Math.min(100, ds.queryCount);
    for (let q = 0; q < warm; q++) adapter.search(queries[q], k, ids, q * k);
    let best = Infinity, cpuShare = 0;
    for (let run = 0; run < config.runs; run++) {
      const cpuStart = process.cpuUsage();
      const start = performance.now();
      for (let q = 0; q < ds.queryCount; q++) counts[q] = adapter.search(queries[q], k, ids, q * k);
      const wallSeconds = (performance.now() - start) / 1000;
      const cpu = process.cpuUsage(cpuStart);
      const cpuSeconds = (cpu.user + cpu.system) / 1e6;
      const seconds = config.clock === "cpu" ? cpuSeconds : wallSeconds;
      if (seconds < best) {
        best = seconds;
        cpuShare = cpuSeconds / wallSeconds;
      }
    }
    const recall = recallAtK(scorer, gt, k, ids, counts);
    emit(ef, 1, recall, ds.queryCount / best);
    // CPU time over wall time of the kept single-threaded pass: well below 1 means this process
    // waited for a core (other work on the machine), so its QPS is understated.
    process.stdout.write(`${JSON.stringify({ cpu: { library: adapter.library, ef, share: round(cpuShare, 3) } })}\n`);
    let batchNote = "";
    if (config.batchThreads > 1) {
      let bestBatch = Infinity;
      let batch = null;
      for (let run = 0; run < config.runs; run++) {
        const start = performance.now();
        batch = adapter.searchBatch(ds.queries, ds.queryCount, k, config.batchThreads);
        bestBatch = Math.min(bestBatch, (performance.now() - start) / 1000);
        if (!batch) break;
      }
      if (batch) {
        const batchRecall = recallAtK(scorer, gt, k, batch.ids, batch.counts);
        emit(ef, config.batchThreads, batchRecall, ds.queryCount / bestBatch);
        batchNote = `, batch x${config.batchThreads} ${(ds.queryCount / bestBatch).toFixed(0)} QPS`;
      }
    }
    log(`${config.library}: ef=${ef} recall ${recall.toFixed(4)}, ${(ds.queryCount / best).toFixed(0)} QPS (cpu/wall ${cpuShare.toFixed(2)})${batchNote}`);
  }
  adapter.close();
}

/** A library in another process (python.ts): it times its own build and single-query passes. */
async function runExternal(config: RunConfig, ds: Dataset, gt: GroundTruth, scorer: Scorer, adapter: ExternalAdapter): Promise<void> {
  const d = ds.dimensions, k = config.k;
  log(`${config.library}: ${adapter.library} ${adapter.version}, building ${ds.baseCount} x ${d} (M=${config.m}, efConstruction=${config.efConstruction}, ${config.buildThreads} thread(s)) in its own Python process`);
  const built = await adapter.build(ds.base, ds.baseCount);
  log(`${config.library}: built in ${built.seconds.toFixed(2)} s (timed in Python), RSS +${built.rssMb.toFixed(0)} MiB (the Python process)`);
  adapter.prepare(ds.queries, ds.queryCount);
  process.stdout.write(`${JSON.stringify({ info: { library: adapter.library, build_threads: adapter.buildThreads, version: adapter.version } })}\n`);
  const lines: { line: ResultLine; share: number }[] = [];
  for (const ef of config.efs) {
    for (const point of await adapter.sweep(ef, k, config.runs, config.clock)) {
      const recall = recallAtK(scorer, gt, k, point.ids, point.counts);
      const qps = ds.queryCount / point.seconds;
      lines.push({
        share: point.cpuShare,
        line: {
          library: adapter.library, dataset: config.label, storage: point.storage, M: config.m,
          efConstruction: config.efConstruction, ef, threads: 1, build_s: round(built.seconds, 3),
          recall: round(recall, 4), qps: round(qps, 1), rss_mb: round(built.rssMb, 1),
        },
      });
      log(`${config.library}: ef=${ef} ${point.storage} recall ${recall.toFixed(4)}, ${qps.toFixed(0)} QPS (cpu/wall ${point.cpuShare.toFixed(2)}; no batch figure)`);
    }
  }
  // With a second parameter (ScaNN's reorder) only the points no other point beats on both recall
  // and QPS are kept (the frontier ann-benchmarks draws for its parameter pairs), in recall order;
  // an ef can then have several points (the per-ef table shows the first) or none.
  const several = lines.length > config.efs.length;
  const dominated = (a: ResultLine) => several && lines.some(({ line: b }) => b !== a && b.recall >= a.recall && b.qps >= a.qps && (b.recall > a.recall || b.qps > a.qps));
  const kept = lines.filter(({ line }) => !dominated(line));
  if (several) kept.sort((a, b) => a.line.recall - b.line.recall);
  for (const { line, share } of kept) {
    process.stdout.write(`${JSON.stringify(line)}\n`);
    process.stdout.write(`${JSON.stringify({ cpu: { library: adapter.library, ef: line.ef, share: round(share, 3) } })}\n`);
  }
  await adapter.close();
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

if (import.meta.main) {
  await main(JSON.parse(process.argv[2]) as RunConfig);
}
