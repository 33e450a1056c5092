/**
 * ann-benchmarks HDF5 files (https://github.com/erikbern/ann-benchmarks): datasets `train`
 * (the base vectors), `test` (queries), `neighbors` and `distances` (ground truth), and the
 * attribute `distance` ("euclidean", "angular", "dot", ...). Read through h5wasm, the HDF5 C
 * library compiled to WebAssembly (a maintained reader, loaded on first use so that users who
 * never read HDF5 need not install it). Rows are read a batch at a time by hyperslab.
 */
import fs, { existsSync, statSync } from "node:fs";
import { FormatError } from "./errors.ts";
import { checkFinite } from "./file.ts";
import { DEFAULT_BATCH, type VectorBatch, type VectorSource } from "./types.ts";

export interface Hdf5Options {
  /** The dataset to read (default "train"). */
  dataset?: string;
}

// deno-lint-ignore no-explicit-any
type H5 = any;
let h5: Promise<H5> | undefined;

// HDF5 prints its error stack to file descriptor 2, which h5wasm's file system writes with
// node:fs writeSync. While one of our calls runs, writeSync is swapped for one that collects
// what goes to fd 2 (and only then: it is restored in `finally`), so a corrupt file gives one
// FormatError quoting the stack's gist instead of a page of stderr.
let diagnostics: string[] = [];

/** Loads h5wasm once per process (about 4 MB of WebAssembly). */
function loadH5(): Promise<H5> {
  h5 ??= (async () => {
    let mod: H5;
    try {
      mod = await import("h5wasm/node");
    } catch (error) {
      h5 = undefined;
      throw new Error(`reading HDF5 needs the npm package h5wasm (npm install h5wasm): ${(error as Error).message}`);
    }
    const lib = mod.default ?? mod;
    await lib.ready;
    return lib;
  })();
  return h5;
}

/** h5wasm throws plain Errors (and sometimes strings) for what HDF5 cannot parse: type them. */
function wrap<T>(path: string, what: string, fn: () => T): T {
  diagnostics = [];
  const writeSync = fs.writeSync;
  // deno-lint-ignore no-explicit-any
  (fs as any).writeSync = (fd: number, buffer: any, ...rest: any[]) => {
    if (fd !== 2) return (writeSync as (...a: unknown[]) => number)(fd, buffer, ...rest);
    const [offset = 0, length = buffer.length - offset] = rest as number[];
    diagnostics.push(new TextDecoder().decode(buffer.subarray(offset, offset + length)));
    return length;
  };
  try {
    return fn();
  } catch (error) {
    if (error instanceof FormatError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    const gist = diagnostics.join("").split("\n").filter((line) => /minor:/.test(line)).map((line) => line.trim().replace(/^minor: /, "")).slice(0, 2);
    const detail = gist.length ? `${message}; HDF5: ${gist.join("; ")}` : message;
    throw new FormatError("BAD_HEADER", path, `HDF5 could not ${what} (${detail}): the file is corrupt, truncated or not HDF5`);
  } finally {
    // deno-lint-ignore no-explicit-any
    (fs as any).writeSync = writeSync;
  }
}

/** The metric an ann-benchmarks `distance` attribute names, if Quiver has it. */
export function metricOfDistance(distance: string | undefined): "l2" | "cosine" | "ip" | undefined {
  if (distance === "euclidean") return "l2";
  if (distance === "angular" || distance === "cosine") return "cosine";
  if (distance === "dot" || distance === "ip") return "ip";
  return undefined;
}

/** An open HDF5 source; `distance` is the file's `distance` attribute when it has one. */
export interface Hdf5Source extends VectorSource {
  readonly distance: string | undefined;
  readonly datasets: string[];
}

/**
 * Opens one 2-D numeric dataset of an HDF5 file (default `train`). Integer datasets are
 * converted to float32. Cost: O(1) to open (plus loading h5wasm once); O(n * d) to read, one
 * batch of rows in memory. Not thread-safe (h5wasm is one WebAssembly instance per thread).
 */
export async function openHdf5(path: string, options: Hdf5Options = {}): Promise<Hdf5Source> {
  if (!existsSync(path)) throw new FormatError("BAD_HEADER", path, "no such file");
  const bytes = statSync(path).size;
  const head = new Uint8Array(8);
  {
    const { openSync, readSync, closeSync } = await import("node:fs");
    const fd = openSync(path, "r");
    readSync(fd, head, 0, 8, 0);
    closeSync(fd);
  }
  // HDF5 files start with this signature (at offset 0 unless a user block precedes it).
  const signature = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];
  if (signature.some((b, i) => head[i] !== b)) throw new FormatError("BAD_HEADER", path, "no HDF5 signature: not an HDF5 file", 0);
  const lib = await loadH5();
  const file = wrap(path, "open the file", () => new lib.File(path, "r"));
  let open = true;
  const close = () => {
    if (!open) return;
    open = false;
    try {
      wrap(path, "close the file", () => file.close());
    } catch {
      // Closing a file HDF5 already found corrupt can fail again; the handle is gone either way.
    }
  };
  try {
    const name = options.dataset ?? "train";
    const datasets: string[] = wrap(path, "list the datasets", () => file.keys());
    if (!datasets.includes(name)) {
      throw new FormatError("BAD_HEADER", path, `no dataset "${name}" (the file has ${datasets.map((d) => `"${d}"`).join(", ") || "none"}): pass --dataset`);
    }
    const dataset = wrap(path, `open dataset "${name}"`, () => file.get(name));
    const metadata = wrap(path, `read the metadata of "${name}"`, () => dataset?.metadata);
    if (metadata === null || typeof metadata !== "object") {
      throw new FormatError("BAD_HEADER", path, `HDF5 gave no metadata for "${name}": the file is corrupt or "${name}" is not a dataset`);
    }
    const shape: number[] = (metadata.shape ?? []).map(Number);
    // H5T_class_t: 0 integer, 1 float.
    if (metadata.type !== 0 && metadata.type !== 1) {
      throw new FormatError("UNSUPPORTED_DTYPE", path, `dataset "${name}" is not numeric (HDF5 class ${metadata.type}): vectors must be floats or integers`);
    }
    if (shape.length !== 2) throw new FormatError("BAD_HEADER", path, `dataset "${name}" has shape (${shape.join(", ")}), not (rows, dimensions)`);
    const [count, dimensions] = shape;
    if (dimensions < 1 || dimensions > 65536) throw new FormatError("BAD_HEADER", path, `dataset "${name}" has ${dimensions} dimensions (1 to 65536 expected)`);
    let distance: string | undefined;
    const attrs = wrap(path, "read the attributes", () => file.attrs);
    if (attrs && "distance" in attrs) {
      const value = wrap(path, "read the distance attribute", () => attrs.distance.value);
      if (typeof value === "string") distance = value;
    }
    const rows = (start: number, n: number): VectorBatch => {
      const values = wrap(path, `read rows ${start}..${start + n} of "${name}"`, () => dataset.slice([[start, start + n], [0, dimensions]]));
      if (values === null || typeof values.length !== "number" || values.length !== n * dimensions) {
        throw new FormatError("BAD_HEADER", path, `dataset "${name}" gave ${values?.length} values for ${n} rows of ${dimensions}`);
      }
      const vectors = values instanceof Float32Array ? values : Float32Array.from(values as ArrayLike<number>, Number);
      checkFinite(vectors, dimensions, start, path);
      return { start, count: n, vectors, bytesRead: Math.round((bytes * (start + n)) / Math.max(count, 1)) };
    };
    return {
      format: "hdf5",
      path,
      dimensions,
      count,
      bytes,
      distance,
      datasets,
      async *batches(batchSize = DEFAULT_BATCH) {
        for (let start = 0; start < count; start += batchSize) yield rows(start, Math.min(batchSize, count - start));
      },
      row(index: number) {
        if (!Number.isInteger(index) || index < 0 || index >= count) {
          throw new RangeError(`${path}: row ${index} is out of range (dataset "${name}" has ${count} rows)`);
        }
        return Promise.resolve(rows(index, 1));
      },
      close,
      [Symbol.dispose]: close,
    };
  } catch (error) {
    close();
    throw error;
  }
}

/**
 * Writes an ann-benchmarks style HDF5 file (datasets of float32 rows, e.g. `train` and `test`,
 * and the `distance` attribute) with h5wasm. For tests and exports. O(bytes).
 */
export async function writeHdf5(
  path: string,
  datasets: Record<string, { data: Float32Array; count: number; dimensions: number }>,
  distance = "euclidean",
): Promise<void> {
  const lib = await loadH5();
  const file = new lib.File(path, "w");
  try {
    for (const [name, m] of Object.entries(datasets)) {
      file.create_dataset({ name, data: m.data, shape: [m.count, m.dimensions], dtype: "<f" });
    }
    file.create_attribute("distance", distance);
  } finally {
    file.close();
  }
}
