// ann-benchmarks style comparison of Quiver, hnswlib-node and usearch: same data, same build
// parameters, a sweep of search-time ef, recall@k against exact ground truth, QPS and RSS.
// Each library runs in its own child process (bench/peers/run.ts) so its memory is measured alone.
//
//   bun bench/ann.ts [--quick] [--json] [--dataset fashion-mnist|fashion-pca96|words100|clustered:N:D[:Q[:SEED]]]
//                    [--metric l2|ip|cosine] [--m 16] [--ef-construction 200] [--ef 10,16,...]
//                    [--libraries quiver,...,hnswlib-node,hnswlib-node-native,usearch,faiss-hnsw,faiss-hnsw-sq8,scann]
//                    [--base N] [--queries N]
//                    [--build-threads 2] [--batch-threads 2] [--runs 1] [--clock wall|cpu] [--k 10]
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { datasetCounts, defaultMetric, loadDataset, parseDatasetSpec, REPO_ROOT, type Metric } from "./data.ts";
import { groundTruth } from "./groundtruth.ts";
import { LIBRARIES, type Library, type ResultLine, type RunConfig } from "./peers/run.ts";
import { recallQpsSvg, type Series } from "./svg.ts";

const FULL_EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512];
const QUICK_EFS = [10, 16, 32, 64, 128, 256];
const QUICK_BASE = 20000;
const QUICK_QUERIES = 1000;

const { values: flags } = parseArgs({
  options: {
    dataset: { type: "string", default: "fashion-mnist" },
    data: { type: "string" }, // Alias of --dataset.
    metric: { type: "string" },
    k: { type: "string", default: "10" },
    m: { type: "string", default: "16" },
    "ef-construction": { type: "string", default: "200" },
    ef: { type: "string" },
    libraries: { type: "string", default: LIBRARIES.join(",") },
    base: { type: "string" },
    queries: { type: "string" },
    "build-threads": { type: "string", default: "2" },
    "batch-threads": { type: "string", default: "2" },
    "gt-threads": { type: "string", default: "2" },
    runs: { type: "string", default: "1" },
    clock: { type: "string", default: "wall" },
    seed: { type: "string", default: "1" },
    quick: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});

if (flags.help) {
  console.log(`usage: bun bench/ann.ts [--quick] [--json] [--dataset fashion-mnist|fashion-pca96|words100|clustered:N:D[:QUERIES[:SEED]]]
  --data NAME                  the same as --dataset
  --metric l2|ip|cosine        distance (default l2; Fashion-MNIST is the ann-benchmarks euclidean set;
                               fashion-pca96, Fashion-MNIST by PCA to 96 dimensions, and words100,
                               word embeddings by PCA to 100 dimensions, default to cosine)
  --m 16 --ef-construction 200 build parameters, the same for every library
  --ef 10,16,...               search-time ef sweep (default ${FULL_EFS.join(",")}; --quick: ${QUICK_EFS.join(",")})
  --libraries a,b              subset of ${LIBRARIES.join(",")}
  --base N --queries N         use the first N base vectors / queries (--quick: ${QUICK_BASE} / ${QUICK_QUERIES})
  --build-threads 2            build threads where the library can (hnswlib-node cannot)
  --batch-threads 2            threads of the batch-search figure (1 disables it)
  --runs 1                     timed passes per ef; the best is kept
  --clock wall|cpu             single-threaded QPS from elapsed time (default) or from the
                               process's CPU time (steadier when other work shares the cores)
  --json                       one JSON object per line instead of a table`);
  process.exit(0);
}

function int(name: string, text: string | undefined): number {
  const v = Number(text);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} ${text}: expected a positive integer`);
  return v;
}

if (flags.data) flags.dataset = flags.data;
const spec = parseDatasetSpec(flags.dataset!);
const metric = (flags.metric ?? defaultMetric(spec)) as Metric;
if (!["l2", "ip", "cosine"].includes(metric)) throw new Error(`--metric ${metric}: expected l2, ip or cosine`);
const libraries = flags.libraries!.split(",").map((s) => s.trim()) as Library[];
for (const lib of libraries) if (!LIBRARIES.includes(lib)) throw new Error(`--libraries: unknown ${lib}; known: ${LIBRARIES.join(", ")}`);
const efs = (flags.ef ?? (flags.quick ? QUICK_EFS : FULL_EFS).join(",")).split(",").map((s) => int("ef", s));
const k = int("k", flags.k);
const clock = flags.clock as "wall" | "cpu";
if (clock !== "wall" && clock !== "cpu") throw new Error(`--clock ${clock}: expected wall or cpu`);
const baseLimit = flags.base ? int("base", flags.base) : flags.quick ? QUICK_BASE : Infinity;
const queryLimit = flags.queries ? int("queries", flags.queries) : flags.quick ? QUICK_QUERIES : Infinity;

const note = (message: string) => process.stderr.write(`${message}\n`);
const ds = loadDataset(spec, baseLimit, queryLimit);
const fullSize = datasetCounts(spec);
const subsampled = ds.baseCount < fullSize.baseCount || ds.queryCount < fullSize.queryCount;
const label = `${ds.name}${subsampled ? `-n${ds.baseCount}-q${ds.queryCount}` : ""}${metric === "l2" ? "" : `-${metric}`}`;
if (subsampled) {
  note(`dataset ${ds.name}: using the first ${ds.baseCount} of ${fullSize.baseCount} base vectors and the first ${ds.queryCount} of ${fullSize.queryCount} queries`);
}
await groundTruth(ds, metric, int("gt-threads", flags["gt-threads"]));

const loadBefore = loadavg()[0];
const results: ResultLine[] = [];
const buildThreads = new Map<string, number>();
const cpuShare = new Map<string, number>(); // "library/ef" -> CPU time / wall time of the x1 pass.
const failures: string[] = [];
for (const library of libraries) {
  const config: RunConfig = {
    library, dataset: flags.dataset!, label, baseLimit: ds.baseCount, queryLimit: ds.queryCount, metric, k,
    m: int("m", flags.m), efConstruction: int("ef-construction", flags["ef-construction"]), efs,
    buildThreads: int("build-threads", flags["build-threads"]), batchThreads: int("batch-threads", flags["batch-threads"]),
    runs: int("runs", flags.runs), seed: int("seed", flags.seed), clock,
  };
  note(`${library}: starting its own process`);
  const child = Bun.spawn([process.execPath, join(import.meta.dir, "peers", "run.ts"), JSON.stringify(config)], {
    stdout: "pipe", stderr: "inherit", cwd: REPO_ROOT,
  });
  const text = await new Response(child.stdout).text();
  const code = await child.exited;
  for (const line of text.split("\n").filter((l) => l.startsWith("{"))) {
    const parsed = JSON.parse(line);
    if (parsed.info) buildThreads.set(parsed.info.library, parsed.info.build_threads);
    else if (parsed.cpu) cpuShare.set(`${parsed.cpu.library}/${parsed.cpu.ef}`, parsed.cpu.share);
    else results.push(parsed as ResultLine);
  }
  if (code !== 0) failures.push(`${library}: its process exited with code ${code} (see its messages above); its results are missing or partial`);
}

const machine = `${cpus()[0]?.model ?? "unknown cpu"}, ${cpus().length} cores`;
mkdirSync(join(REPO_ROOT, "bench", "results"), { recursive: true });
const jsonPath = join(REPO_ROOT, "bench", "results", `ann-${label}.jsonl`);
writeFileSync(jsonPath, results.map((r) => JSON.stringify(r)).join("\n") + (results.length ? "\n" : ""));

if (flags.json) {
  for (const r of results) console.log(JSON.stringify(r));
} else {
  printTable();
}
if (results.length > 0) {
  const svgPath = join(REPO_ROOT, "bench", "results", `ann-${label}.svg`);
  writeFileSync(svgPath, plot());
  note(`wrote ${jsonPath} and ${svgPath}`);
}
for (const f of failures) note(`FAILED ${f}`);
process.exit(failures.length > 0 ? 1 : 0);

function printTable(): void {
  console.log(`\nANN benchmark: ${label} (${ds.baseCount} x ${ds.dimensions}, ${ds.queryCount} queries), metric ${metric}, k=${k}`);
  if (subsampled) {
    console.log(`subsampled: the first ${ds.baseCount} of ${fullSize.baseCount} base vectors and the first ${ds.queryCount} of ${fullSize.queryCount} queries (ground truth computed for exactly these)`);
  }
  console.log(`build: M=${flags.m}, efConstruction=${flags["ef-construction"]}; machine: ${machine}; runtime: bun ${Bun.version}`);
  // Other work on the machine skews QPS; the 1-minute load average before and after says how much.
  console.log(`load average (1 min): ${loadBefore.toFixed(2)} before, ${loadavg()[0].toFixed(2)} after; timed passes per ef: ${flags.runs} (best kept); single-threaded QPS clock: ${clock}`);
  const byLib = Map.groupBy(results, (r) => r.library);
  for (const [library, rows] of byLib) {
    const first = rows[0];
    console.log(`\n${library}: build ${first.build_s.toFixed(2)} s on ${buildThreads.get(library) ?? "?"} thread(s), index memory ${first.rss_mb.toFixed(0)} MiB (RSS, memfds counted whole)`);
    console.log(`  ${"ef".padStart(5)} ${"recall".padStart(8)} ${"QPS x1".padStart(10)} ${"cpu/wall".padStart(9)} ${"recall".padStart(8)} ${`QPS batch`.padStart(10)}`);
    for (const ef of efs) {
      const one = rows.find((r) => r.ef === ef && r.threads === 1);
      const many = rows.find((r) => r.ef === ef && r.threads > 1);
      const batch = many ? `${many.recall.toFixed(4).padStart(8)} ${many.qps.toFixed(0).padStart(10)}` : `${"".padStart(8)} ${"n/a".padStart(10)}`;
      const share = cpuShare.get(`${library}/${ef}`);
      const shareText = (share === undefined ? "?" : share.toFixed(2)).padStart(9);
      if (one) console.log(`  ${String(ef).padStart(5)} ${one.recall.toFixed(4).padStart(8)} ${one.qps.toFixed(0).padStart(10)} ${shareText} ${batch}`);
    }
    if (!rows.some((r) => r.threads > 1) && Number(flags["batch-threads"]) > 1) {
      console.log(`  (no batch figure: ${library} has no multi-threaded search in this harness)`);
    }
  }
  const shares = [...cpuShare.values()];
  if (shares.some((v) => v < 0.9)) {
    console.log(`\nWARNING: some single-threaded passes got under 90% of a core (cpu/wall down to ${Math.min(...shares).toFixed(2)}): the machine was busy, so those QPS figures are low. Re-run on a quiet machine or with --runs 3.`);
  }
  printRatios();
}

/** Best single-threaded QPS reaching each recall target, and Quiver's ratio to each peer. */
function printRatios(): void {
  const targets = [0.9, 0.95, 0.99, 0.995, 0.999, 0.9995];
  const best = (library: string, target: number, threads: (t: number) => boolean) => {
    const ok = results.filter((r) => r.library === library && threads(r.threads) && r.recall >= target);
    return ok.length ? Math.max(...ok.map((r) => r.qps)) : NaN;
  };
  const libs = [...new Set(results.map((r) => r.library))];
  for (const [title, threads] of [["single-threaded", (t: number) => t === 1], ["batch", (t: number) => t > 1]] as const) {
    const shown = libs.filter((l) => results.some((r) => r.library === l && threads(r.threads)));
    if (shown.length === 0) continue;
    console.log(`\nbest ${title} QPS at recall >= target${shown.includes("quiver") ? " (ratio = quiver / peer)" : ""}:`);
    const width = Math.max(20, ...shown.map((l) => l.length + 2));
    console.log(`  ${"recall".padEnd(8)}${shown.map((l) => l.padStart(width)).join("")}`);
    for (const target of targets) {
      const cells = shown.map((l) => {
        const q = best(l, target, threads);
        const ratio = !l.startsWith("quiver") && shown.includes("quiver") ? best("quiver", target, threads) / q : NaN;
        const text = Number.isNaN(q) ? "-" : `${q.toFixed(0)}${Number.isNaN(ratio) ? "" : ` (${ratio.toFixed(2)}x)`}`;
        return text.padStart(width);
      });
      console.log(`  ${String(target).padEnd(8)}${cells.join("")}`);
    }
  }
}

function plot(): string {
  const series: Series[] = [];
  for (const library of new Set(results.map((r) => r.library))) {
    for (const threads of new Set(results.filter((r) => r.library === library).map((r) => r.threads))) {
      const rows = results.filter((r) => r.library === library && r.threads === threads);
      series.push({
        name: `${library}${threads > 1 ? ` batch x${threads}` : ""}`,
        dashed: threads > 1,
        points: rows.map((r) => ({ recall: r.recall, qps: r.qps })),
      });
    }
  }
  const subtitle = `${ds.baseCount}x${ds.dimensions}, ${ds.queryCount} queries, k=${k}, M=${flags.m}, efC=${flags["ef-construction"]}; `
    + `${machine}, load ${loadBefore.toFixed(1)}; QPS clock ${clock}`;
  return recallQpsSvg(`${label} (${metric}): recall vs QPS`, subtitle, series, (s) => s.name.split(" ")[0], 1 / (ds.queryCount * k));
}
