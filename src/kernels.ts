/**
 * The SIMD distance kernels on their own, outside any index: for benchmarks and for checking
 * the kernels against a reference. Each call is one FFI crossing and is safe from any thread.
 */
import { native } from "./runtime/loader.ts";
import { KernelLevel, Metric as MetricCode } from "./ffi.gen.ts";
import { check, InvalidArgumentError } from "./errors.ts";
import type { Metric } from "./index.ts";

const levels: Record<number, string> = Object.fromEntries(Object.entries(KernelLevel).map(([name, code]) => [code, name]));

/** The native side reads 4 bytes per element: anything but a Float32Array would be overread. */
function floats(v: Float32Array): Float32Array {
  if (!(v instanceof Float32Array)) throw new InvalidArgumentError("the kernels take Float32Arrays");
  return v;
}

/** The i8 kernels take a u32 length: anything else would be truncated (Bun) or a raw TypeError (Deno). */
function codes(a: Uint8Array, b: Uint8Array, d: number): number {
  if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array)) throw new InvalidArgumentError("the i8 kernels take encodeI8 buffers (Uint8Array)");
  if (typeof d !== "number" || !Number.isInteger(d) || d < 0 || d > 0xffff_ffff) {
    throw new InvalidArgumentError(`d = ${String(d)} (expected an integer in [0, 2^32 - 1])`);
  }
  return d;
}

/** Which kernels run here and which library they came from. */
export interface KernelInfo {
  /** The CPU level chosen at load (a KernelLevel name: "avx512", "avx2", "neon", ...). */
  level: string;
  /** The library file that was loaded. */
  library: string;
  /** Which of the loader's candidates it was (e.g. "@quiverdb/linux-x64-gnu", "local build"). */
  source: string;
  runtime: string;
}

/** The distance kernels (see the interface's members). */
export interface Kernels {
  /** Squared euclidean distance over the common length. O(d). */
  l2sq(a: Float32Array, b: Float32Array): number;
  /** Dot product over the common length. O(d). */
  dot(a: Float32Array, b: Float32Array): number;
  /** i8 storage's coded form of `vector` around `centre` (default zero): 64 + d (rounded up to 64) bytes. */
  encodeI8(vector: Float32Array, centre?: Float32Array, metric?: Metric): Uint8Array;
  /**
   * The i8 squared euclidean kernel on two `encodeI8` buffers of `d` dimensions (NaN when the
   * buffers are too short for `d`; InvalidArgumentError unless `d` is an integer in [0, 2^32)).
   */
  l2sqI8(a: Uint8Array, b: Uint8Array, d: number): number;
  /** The i8 dot kernel on two `encodeI8` buffers of `d` dimensions (as `l2sqI8`). */
  dotI8(a: Uint8Array, b: Uint8Array, d: number): number;
  info(): KernelInfo;
}

/** The SIMD distance kernels, exposed for benchmarks. */
export const kernels: Kernels = {
  l2sq: (a, b) => native().fn.qv_kernel_l2sq(floats(a), floats(b), Math.min(a.length, b.length)),
  dot: (a, b) => native().fn.qv_kernel_dot(floats(a), floats(b), Math.min(a.length, b.length)),
  encodeI8: (vector, centre = new Float32Array(vector.length), metric = "l2") => {
    floats(vector);
    floats(centre);
    const out = new Uint8Array(64 + Math.ceil(vector.length / 64) * 64);
    const code = metric === "l2" ? MetricCode.l2sq : metric === "ip" ? MetricCode.ip : MetricCode.cosine;
    check(native().fn.qv_kernel_encode_i8(vector, centre, Math.min(vector.length, centre.length), code, out, out.length));
    return out;
  },
  l2sqI8: (a, b, d) => native().fn.qv_kernel_l2sq_i8(a, a.length, b, b.length, codes(a, b, d)),
  dotI8: (a, b, d) => native().fn.qv_kernel_dot_i8(a, a.length, b, b.length, codes(a, b, d)),
  info: () => ({
    level: levels[native().fn.qv_kernel_level()] ?? "unknown",
    library: native().path,
    source: native().source,
    runtime: native().runtime,
  }),
};
