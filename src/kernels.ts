/**
 * The SIMD distance kernels on their own, outside any index: for benchmarks and for checking
 * the kernels against a reference. Each call is one FFI crossing and is safe from any thread.
 */
import { native } from "./runtime/loader.ts";
import { fileFormat, KernelLevel, Metric as MetricCode } from "./ffi.gen.ts";
import { check, InvalidArgumentError } from "./errors.ts";
import { plainTyped } from "./arrays.ts";
import type { Metric } from "./index.ts";

const levels: Record<number, string> = Object.fromEntries(Object.entries(KernelLevel).map(([name, code]) => [code, name]));

/**
 * The native side reads 4 bytes per element: anything but a Float32Array would be overread, and
 * so would one whose `length` claims more than it holds (a subclass, an own property: see
 * arrays.ts, which gives back an array whose length is its real one).
 */
function floats(v: Float32Array): Float32Array {
  const plain = plainTyped<Float32Array>(v, Float32Array);
  if (plain === undefined) throw new InvalidArgumentError("the kernels take Float32Arrays");
  return plain;
}

/** An i8 code buffer whose length is its real one (see floats). */
function bytes(v: Uint8Array): Uint8Array {
  const plain = plainTyped<Uint8Array>(v, Uint8Array);
  if (plain === undefined) throw new InvalidArgumentError("the i8 kernels take encodeI8 buffers (Uint8Array)");
  return plain;
}

/** The i8 kernels take a u32 length: anything else would be truncated (Bun) or a raw TypeError (Deno). */
function codes(d: number): number {
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
  /** i8 storage's coded form of `vector` around `centre` (default zero): 64 + d (rounded up to 16) bytes. */
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
  l2sq: (x, y) => {
    const [a, b] = [floats(x), floats(y)];
    return native().fn.qv_kernel_l2sq(a, b, Math.min(a.length, b.length));
  },
  dot: (x, y) => {
    const [a, b] = [floats(x), floats(y)];
    return native().fn.qv_kernel_dot(a, b, Math.min(a.length, b.length));
  },
  encodeI8: (v, c, metric = "l2") => {
    const vector = floats(v);
    const centre = c === undefined ? new Float32Array(vector.length) : floats(c);
    const out = new Uint8Array(64 + Math.ceil(vector.length / fileFormat.i8Granule) * fileFormat.i8Granule);
    const code = metric === "l2" ? MetricCode.l2sq : metric === "ip" ? MetricCode.ip : MetricCode.cosine;
    check(native().fn.qv_kernel_encode_i8(vector, centre, Math.min(vector.length, centre.length), code, out, out.length));
    return out;
  },
  l2sqI8: (x, y, d) => {
    const [a, b] = [bytes(x), bytes(y)];
    return native().fn.qv_kernel_l2sq_i8(a, a.length, b, b.length, codes(d));
  },
  dotI8: (x, y, d) => {
    const [a, b] = [bytes(x), bytes(y)];
    return native().fn.qv_kernel_dot_i8(a, a.length, b, b.length, codes(d));
  },
  info: () => ({
    level: levels[native().fn.qv_kernel_level()] ?? "unknown",
    library: native().path,
    source: native().source,
    runtime: native().runtime,
  }),
};
