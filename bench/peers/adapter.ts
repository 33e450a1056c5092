// The one interface bench/peers/run.ts drives; one adapter file per library implements it.
import type { Metric } from "../data.ts";

export interface BuildParams {
  dimensions: number;
  metric: Metric;
  m: number;
  efConstruction: number;
  /** Threads to build with, where the library can build in parallel. */
  threads: number;
  seed: number;
  /** Quiver's vector storage ("f32", "f16", "i8" or "rabitq"); the peers store f32. */
  storage?: "f32" | "f16" | "i8" | "rabitq";
  /** Quiver f16/i8: rerank on the exact vectors (default true). */
  rerank?: boolean;
}

export interface BatchResult {
  /** Row-major `count * k` ids; only the first counts[q] of row q are valid. */
  ids: ArrayLike<number>;
  counts: ArrayLike<number>;
}

export interface Adapter {
  readonly library: string;
  /** The vector storage the JSON lines report. */
  readonly storage: string;
  /** Threads the build really used (hnswlib-node has no parallel insert, so it reports 1). */
  readonly buildThreads: number;
  /** Inserts `count` vectors with keys 0..count-1. Timed as the build. */
  build(base: Float32Array, count: number): void;
  /** Sets the search-time candidate list size for the following searches. Not timed. */
  setEf(ef: number): void;
  /** Converts queries to the form `search` takes (hnswlib-node wants plain arrays). Not timed. */
  prepareQueries(queries: Float32Array, count: number, dimensions: number): unknown[];
  /** One single-threaded query: writes up to k ids at out[at..] and returns how many. Timed. */
  search(query: unknown, k: number, out: Float64Array, at: number): number;
  /** A multi-threaded batch search, or null when the library has no such API. Timed. */
  searchBatch(queries: Float32Array, count: number, k: number, threads: number): BatchResult | null;
  /** Frees native memory where the library allows it. */
  close(): void;
}

/**
 * A library that runs in another process (the Python peers, bench/peers/python.ts): it times its
 * own build and its own single-query loop, so the bridge between the processes is not charged to
 * it. run.ts drives it with the same data, ef sweep, passes and ground truth as an Adapter.
 */
export interface ExternalAdapter {
  readonly external: true;
  readonly library: string;
  readonly version: string;
  readonly storage: string;
  readonly buildThreads: number;
  /** Builds from `count` vectors with keys 0..count-1; returns the build time and the memory it
   * added, both measured in the library's process. */
  build(base: Float32Array, count: number): Promise<{ seconds: number; rssMb: number }>;
  /** Hands over the queries (not timed). */
  prepare(queries: Float32Array, count: number): void;
  /** At this ef: a warm-up, then `runs` timed passes of one-query calls on one thread, for each
   * variant of the library's second search parameter (ScaNN's reorder budget; one variant for
   * FAISS). Each point has the ids (row-major count * k, -1 where missing) and counts of its last
   * pass and the time of its best pass; `storage` names the variant in the JSON lines. */
  sweep(ef: number, k: number, runs: number, clock: "wall" | "cpu"): Promise<SweepPoint[]>;
  close(): Promise<void>;
}

export interface SweepPoint {
  storage: string;
  seconds: number;
  cpuShare: number;
  ids: Float64Array;
  counts: Uint32Array;
}
