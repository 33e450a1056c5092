/**
 * Quiver: an embedded HNSW vector index for Bun and Deno with a Zig core.
 *
 *   import { Index } from "./mod.ts";
 *   using index = new Index({ dimensions: 3 });
 *   index.add(1, new Float32Array([1, 0, 0]));
 *   index.search(new Float32Array([1, 0, 0]), 1); // { keys: [1n], distances: [0] }
 */
import { loadNative, native } from "./src/native.ts";
import { KernelLevel, Metric as MetricCode } from "./src/ffi.gen.ts";
import { check, InvalidArgumentError } from "./src/errors.ts";
import type { Metric } from "./src/index.ts";

await loadNative();

export { Index } from "./src/index.ts";
export type { AddOptions, IndexOptions, Metric, OpenOptions, Stats, Storage, VerifyReport } from "./src/index.ts";
export { Snapshot } from "./src/snapshot.ts";
export { VectorView } from "./src/view.ts";
export type { BatchOptions, BatchResult, SearchOptions, SearchResult, VectorLike } from "./src/reader.ts";
export type { Key } from "./src/keys.ts";
export * from "./src/errors.ts";

const levels = Object.fromEntries(Object.entries(KernelLevel).map(([name, code]) => [code, name]));

/** The native side reads 4 bytes per element: anything but a Float32Array would be overread. */
function floats(v: Float32Array): Float32Array {
  if (!(v instanceof Float32Array)) throw new InvalidArgumentError("the kernels take Float32Arrays");
  return v;
}

/** The SIMD distance kernels, exposed for benchmarks. */
export const kernels = {
  l2sq: (a: Float32Array, b: Float32Array): number => native().fn.qv_kernel_l2sq(floats(a), floats(b), Math.min(a.length, b.length)),
  dot: (a: Float32Array, b: Float32Array): number => native().fn.qv_kernel_dot(floats(a), floats(b), Math.min(a.length, b.length)),
  /** i8 storage's coded form of `vector` around `centre` (default zero): 64 + d (rounded up to 64) bytes. */
  encodeI8: (vector: Float32Array, centre = new Float32Array(vector.length), metric: Metric = "l2"): Uint8Array => {
    floats(vector);
    floats(centre);
    const out = new Uint8Array(64 + Math.ceil(vector.length / 64) * 64);
    const code = metric === "l2" ? MetricCode.l2sq : metric === "ip" ? MetricCode.ip : MetricCode.cosine;
    check(native().fn.qv_kernel_encode_i8(vector, centre, Math.min(vector.length, centre.length), code, out, out.length));
    return out;
  },
  /** The i8 kernels on two `encodeI8` buffers of `d` dimensions (NaN on bad lengths). */
  l2sqI8: (a: Uint8Array, b: Uint8Array, d: number): number => native().fn.qv_kernel_l2sq_i8(a, a.length, b, b.length, d),
  dotI8: (a: Uint8Array, b: Uint8Array, d: number): number => native().fn.qv_kernel_dot_i8(a, a.length, b, b.length, d),
  info: (): { level: string; library: string; runtime: string } => ({
    level: levels[native().fn.qv_kernel_level()] ?? "unknown",
    library: native().path,
    runtime: native().runtime,
  }),
};
