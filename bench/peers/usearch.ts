// usearch 2.26.2 (Unum's C++ through N-API, prebuilt). Its JS binding fixes the search expansion
// (ef) when the index is constructed and exposes no setter, so after the build the index is saved
// to a scratch file under .cache/ and each ef loads it into a fresh index made with that
// expansion_search (load keeps the constructor's expansion settings). Loading is not timed.
import { createRequire } from "node:module";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { CACHE_DIR } from "../data.ts";
import type { Adapter, BatchResult, BuildParams } from "./adapter.ts";

const require = createRequire(import.meta.url);

interface UsearchIndex {
  add(keys: BigUint64Array, vectors: Float32Array, threads?: number): void;
  search(vectors: Float32Array, k: number, threads: number): { keys: BigUint64Array; distances: Float32Array; counts?: BigUint64Array };
  save(path: string): void;
  load(path: string): void;
}

const METRIC = { l2: "l2sq", ip: "ip", cosine: "cos" } as const;

export function create(params: BuildParams): Adapter {
  const usearch = require("usearch") as { Index: new (config: object) => UsearchIndex };
  const make = (ef: number) => new usearch.Index({
    dimensions: params.dimensions,
    metric: METRIC[params.metric],
    quantization: "f32",
    connectivity: params.m,
    expansion_add: params.efConstruction,
    expansion_search: ef,
  });
  let index = make(64);
  const scratch = join(CACHE_DIR, "tmp", `usearch-${process.pid}.usearch`);
  let saved = false;
  process.on("exit", () => rmSync(scratch, { force: true })); // Also when the run fails midway.
  return {
    library: "usearch",
    storage: "f32",
    buildThreads: params.threads,
    build(base: Float32Array, count: number) {
      const keys = new BigUint64Array(count);
      for (let i = 0; i < count; i++) keys[i] = BigInt(i);
      index.add(keys, base.subarray(0, count * params.dimensions), params.threads);
    },
    setEf(ef: number) {
      if (!saved) {
        mkdirSync(join(CACHE_DIR, "tmp"), { recursive: true });
        index.save(scratch);
        saved = true;
      }
      index = make(ef);
      Bun.gc(true); // Lets the previous index's finalizer free its native memory before the load.
      index.load(scratch);
    },
    prepareQueries(queries: Float32Array, count: number, dimensions: number) {
      return Array.from({ length: count }, (_, i) => queries.subarray(i * dimensions, (i + 1) * dimensions));
    },
    search(query: unknown, k: number, out: Float64Array, at: number) {
      const { keys } = index.search(query as Float32Array, k, 1);
      for (let i = 0; i < keys.length; i++) out[at + i] = Number(keys[i]);
      return keys.length;
    },
    searchBatch(queries: Float32Array, count: number, k: number, threads: number): BatchResult {
      const r = index.search(queries, k, threads);
      const counts = new Uint32Array(count);
      for (let q = 0; q < count; q++) counts[q] = Number(r.counts![q]);
      const ids = new Float64Array(r.keys.length);
      for (let i = 0; i < ids.length; i++) ids[i] = Number(r.keys[i]);
      return { ids, counts };
    },
    close() {
      if (saved) rmSync(scratch, { force: true });
    },
  };
}
