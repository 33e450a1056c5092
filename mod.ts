/**
 * Quiver: an embedded HNSW vector index for Bun and Deno with a Zig core.
 *
 *   import { Index } from "./mod.ts";
 *   using index = new Index({ dimensions: 3 });
 *   index.add(1, new Float32Array([1, 0, 0]));
 *   index.search(new Float32Array([1, 0, 0]), 1); // { keys: [1n], distances: [0] }
 */
import { loadNative, native } from "./src/native.ts";
import { KernelLevel } from "./src/ffi.gen.ts";

await loadNative();

export { Index } from "./src/index.ts";
export type { AddOptions, IndexOptions, Metric, OpenOptions, Stats, Storage, VerifyReport } from "./src/index.ts";
export { Snapshot } from "./src/snapshot.ts";
export { VectorView } from "./src/view.ts";
export type { BatchOptions, BatchResult, SearchOptions, SearchResult, VectorLike } from "./src/reader.ts";
export type { Key } from "./src/keys.ts";
export * from "./src/errors.ts";

const levels = Object.fromEntries(Object.entries(KernelLevel).map(([name, code]) => [code, name]));

/** The SIMD distance kernels, exposed for benchmarks. */
export const kernels = {
  l2sq: (a: Float32Array, b: Float32Array): number => native().fn.qv_kernel_l2sq(a, b, Math.min(a.length, b.length)),
  dot: (a: Float32Array, b: Float32Array): number => native().fn.qv_kernel_dot(a, b, Math.min(a.length, b.length)),
  info: (): { level: string; library: string; runtime: string } => ({
    level: levels[native().fn.qv_kernel_level()] ?? "unknown",
    library: native().path,
    runtime: native().runtime,
  }),
};
