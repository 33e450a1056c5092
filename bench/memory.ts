// Resident memory of a persisted index while it serves queries, per storage kind.
//
//   bun bench/memory.ts [--dataset fashion-mnist] [--ef 32] [--storages f32,f16,i8,i8:walk]
//
// For each storage: build the index from the data set into a directory on disk (not tmpfs),
// close it, then in a fresh process open it (map, don't load), run every query once at the
// given ef, and read /proc/self/smaps: the resident bytes of each index file's mapping, and the
// process's RSS growth from before the open. The f32 vectors of f16 and i8 storage live in the
// `.vectors` file and are read only to rerank a few candidates per query, so how much of that file
// a query stream pulls in is part of the answer, measured rather than assumed. "i8:walk" searches
// the i8 index with `rerank: false`, which never reads that file.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadDataset, parseDatasetSpec } from "./data.ts";
import { readGroundTruth, recallAtK } from "./groundtruth.ts";
import { Scorer } from "./score.ts";

const { values } = parseArgs({
  options: {
    dataset: { type: "string", default: "fashion-mnist" },
    ef: { type: "string", default: "32" },
    storages: { type: "string", default: "f32,f16,i8,i8:walk" },
    rerank: { type: "string", default: "true" },
    child: { type: "string" },
    path: { type: "string" },
  },
});

const spec = parseDatasetSpec(values.dataset!);
const ef = Number(values.ef);
const suffixes = ["", ".graph", ".upper", ".vectors"];

/** Resident KiB per mapped file whose path starts with `prefix`, from /proc/self/smaps. */
function residentByFile(prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  let current: string | undefined;
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s+(.*)$/.exec(line);
    if (header) {
      current = header[1].startsWith(prefix) ? header[1].slice(prefix.length) || "(data)" : undefined;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && current !== undefined) out[current] = (out[current] ?? 0) + Number(rss[1]);
  }
  return out;
}

const mib = (kib: number) => kib / 1024;

async function child(path: string): Promise<void> {
  const ds = loadDataset(spec);
  const gt = readGroundTruth(ds, "l2");
  const { Index } = await import("../mod.ts");
  Bun.gc(true);
  const before = process.memoryUsage().rss;
  const openStart = performance.now();
  const index = Index.open(path, { readOnly: true });
  const openMs = performance.now() - openStart;
  const d = ds.dimensions;
  const ids = new Float64Array(ds.queryCount * 10);
  const start = performance.now();
  for (let q = 0; q < ds.queryCount; q++) {
    const { keys } = index.search(ds.queries.subarray(q * d, (q + 1) * d), 10, { ef, rerank: values.rerank !== "false" });
    for (let i = 0; i < keys.length; i++) ids[q * 10 + i] = Number(keys[i]);
  }
  const seconds = (performance.now() - start) / 1000;
  Bun.gc(true);
  const files = residentByFile(path);
  const grown = (process.memoryUsage().rss - before) / 2 ** 20;
  const recall = gt ? recallAtK(new Scorer(ds, "l2"), gt, 10, ids) : NaN;
  index.close();
  process.stdout.write(`${JSON.stringify({ openMs, qps: ds.queryCount / seconds, recall, grown, files })}\n`);
}

async function main(): Promise<void> {
  const ds = loadDataset(spec);
  const { Index } = await import("../mod.ts");
  const dir = mkdtempSync(join(tmpdir(), "quiver-memory-"));
  console.log(`${ds.name}: ${ds.baseCount} x ${ds.dimensions}, ${ds.queryCount} queries at ef ${ef}, files in ${dir}`);
  console.log("storage   files on disk   resident while serving (per file)                          RSS growth   recall   QPS");
  try {
    for (const entry of values.storages!.split(",")) {
      const [storage, mode] = entry.split(":");
      const path = join(dir, storage);
      if (!existsSync(path)) {
        const index = Index.open(path, { dimensions: ds.dimensions, m: 16, efConstruction: 200, storage: storage as "f32" });
        const keys = new BigUint64Array(ds.baseCount);
        for (let i = 0; i < keys.length; i++) keys[i] = BigInt(i);
        index.add(keys, ds.base.subarray(0, ds.baseCount * ds.dimensions), { threads: 2 });
        index.close();
      }
      const onDisk = suffixes.map((s) => Bun.file(path + s).size).reduce((a, b) => a + b, 0);
      const args = ["--child", storage, "--path", path, "--dataset", values.dataset!, "--ef", String(ef), "--rerank", String(mode !== "walk")];
      const proc = Bun.spawnSync([process.execPath, import.meta.path, ...args], {
        stderr: "inherit",
      });
      const result = JSON.parse(new TextDecoder().decode(proc.stdout).trim().split("\n").pop()!);
      const files = Object.entries(result.files as Record<string, number>)
        .map(([name, kib]) => `${name} ${mib(kib).toFixed(0)}`)
        .join(", ");
      const resident = Object.values(result.files as Record<string, number>).reduce((a, b) => a + b, 0);
      console.log(
        `${entry.padEnd(8)}  ${(onDisk / 2 ** 20).toFixed(0).padStart(9)} MiB   ${mib(resident).toFixed(0).padStart(4)} MiB: ${files.padEnd(48)}  ${result.grown.toFixed(0).padStart(6)} MiB   ${result.recall.toFixed(4)}   ${result.qps.toFixed(0)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (values.child) await child(values.path!);
else await main();
