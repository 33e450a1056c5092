// Quiver through its public TypeScript API (mod.ts), under Bun. Imported lazily by run.ts so the
// peers can be benchmarked before the native library is built.
import type { Adapter, BatchResult, BuildParams } from "./adapter.ts";

interface QuiverIndex {
  add(keys: BigUint64Array, vectors: Float32Array, options?: { threads?: number }): void;
  search(query: Float32Array, k: number, options?: { ef?: number; rerank?: boolean }): { keys: BigUint64Array; distances: Float32Array; ids: (number | bigint | string)[] };
  searchBatch(queries: Float32Array, k: number, options?: { ef?: number; threads?: number; rerank?: boolean }): {
    keys: BigUint64Array;
    distances: Float32Array;
    counts: Uint32Array;
    ids: (number | bigint | string | undefined)[];
  };
  reserve(slots: number): void;
  close(): void;
}

export async function create(params: BuildParams): Promise<Adapter> {
  const mod = (await import("../../mod.ts")) as { Index: new (options: object) => QuiverIndex };
  const index = new mod.Index({
    dimensions: params.dimensions,
    metric: params.metric,
    m: params.m,
    efConstruction: params.efConstruction,
    ef: 64,
    seed: params.seed,
    storage: params.storage ?? "f32",
  });
  let ef = 64;
  const rerank = params.rerank ?? true;
  return {
    library: (params.storage && params.storage !== "f32" ? `quiver-${params.storage}` : "quiver") + (rerank ? "" : "-walk"),
    storage: params.storage ?? "f32",
    buildThreads: params.threads,
    build(base: Float32Array, count: number) {
      index.reserve(count); // Like hnswlib's initIndex(maxElements) and usearch's add, which reserve first.
      const keys = new BigUint64Array(count);
      for (let i = 0; i < count; i++) keys[i] = BigInt(i);
      index.add(keys, base.subarray(0, count * params.dimensions), { threads: params.threads });
    },
    setEf(value: number) {
      ef = value;
    },
    prepareQueries(queries: Float32Array, count: number, dimensions: number) {
      return Array.from({ length: count }, (_, i) => queries.subarray(i * dimensions, (i + 1) * dimensions));
    },
    search(query: unknown, k: number, out: Float64Array, at: number) {
      // Quiver rejects ef < k; hnswlib and FAISS search with max(ef, k) there, so the sweep does the same.
      // The ids as numbers, as a caller reads them (hnswlib-node's neighbours are numbers too).
      const { ids } = index.search(query as Float32Array, k, { ef: Math.max(ef, k), rerank });
      for (let i = 0; i < ids.length; i++) out[at + i] = Number(ids[i]);
      return ids.length;
    },
    searchBatch(queries: Float32Array, count: number, k: number, threads: number): BatchResult {
      const r = index.searchBatch(queries.subarray(0, count * params.dimensions), k, { ef: Math.max(ef, k), threads, rerank });
      const ids = new Float64Array(r.keys.length);
      for (let i = 0; i < ids.length; i++) ids[i] = r.ids[i] === undefined ? 0 : Number(r.ids[i]);
      return { ids, counts: r.counts };
    },
    close() {
      index.close();
    },
  };
}
