/**
 * The Worker that runs h5wasm for src/formats/hdf5.ts. HDF5's C library can loop forever on a
 * corrupt file (the formats fuzz found such a file), and a synchronous WebAssembly call cannot
 * be interrupted: so every call runs here, and the reader terminates this Worker when a call
 * takes longer than its timeout. Messages: {id, op: "open", path, dataset} -> the shape;
 * {id, op: "rows", start, count} -> a Float32Array (transferred); errors come back as
 * {id, error: {code, message}}.
 */
import fs from "node:fs";

// deno-lint-ignore no-explicit-any
type H5 = any;
let lib: H5;
// deno-lint-ignore no-explicit-any
let file: any;
// deno-lint-ignore no-explicit-any
let dataset: any;
let shape: [number, number] = [0, 0];
let diagnostics: string[] = [];

class Failure extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

// HDF5 prints its error stack to fd 2 through h5wasm's file system, which uses node:fs
// writeSync: while a call runs, what goes to fd 2 is collected for the error message instead.
function wrap<T>(what: string, fn: () => T): T {
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
    if (error instanceof Failure) throw error;
    const message = error instanceof Error ? error.message : String(error);
    const gist = diagnostics.join("").split("\n").filter((l) => /minor:/.test(l)).map((l) => l.trim().replace(/^minor: /, "")).slice(0, 2);
    throw new Failure("BAD_HEADER", `HDF5 could not ${what} (${gist.length ? `${message}; HDF5: ${gist.join("; ")}` : message}): the file is corrupt, truncated or not HDF5`);
  } finally {
    // deno-lint-ignore no-explicit-any
    (fs as any).writeSync = writeSync;
  }
}

async function open(path: string, name: string) {
  if (!lib) {
    const mod = await import("h5wasm/node");
    lib = mod.default ?? mod;
    await lib.ready;
  }
  file = wrap("open the file", () => new lib.File(path, "r"));
  const datasets: string[] = wrap("list the datasets", () => file.keys());
  if (!datasets.includes(name)) {
    throw new Failure("BAD_HEADER", `no dataset "${name}" (the file has ${datasets.map((d) => `"${d}"`).join(", ") || "none"}): pass --dataset`);
  }
  dataset = wrap(`open dataset "${name}"`, () => file.get(name));
  const metadata = wrap(`read the metadata of "${name}"`, () => dataset?.metadata);
  if (metadata === null || typeof metadata !== "object") throw new Failure("BAD_HEADER", `HDF5 gave no metadata for "${name}": the file is corrupt or it is not a dataset`);
  const dims: number[] = (Array.isArray(metadata.shape) ? metadata.shape : []).map(Number);
  // H5T_class_t: 0 integer, 1 float.
  if (metadata.type !== 0 && metadata.type !== 1) {
    throw new Failure("UNSUPPORTED_DTYPE", `dataset "${name}" is not numeric (HDF5 class ${metadata.type}): vectors must be floats or integers`);
  }
  if (dims.length !== 2) throw new Failure("BAD_HEADER", `dataset "${name}" has shape (${dims.join(", ")}), not (rows, dimensions)`);
  if (dims[1] < 1 || dims[1] > 65536) throw new Failure("BAD_HEADER", `dataset "${name}" has ${dims[1]} dimensions (1 to 65536 expected)`);
  shape = [dims[0], dims[1]];
  let distance: string | undefined;
  const attrs = wrap("read the attributes", () => file.attrs);
  if (attrs && typeof attrs === "object" && "distance" in attrs) {
    const value = wrap("read the distance attribute", () => attrs.distance.value);
    if (typeof value === "string") distance = value;
  }
  return { count: shape[0], dimensions: shape[1], distance, datasets };
}

function rows(start: number, count: number): Float32Array {
  const [, d] = shape;
  const values = wrap(`read rows ${start}..${start + count}`, () => dataset.slice([[start, start + count], [0, d]]));
  if (values === null || typeof values?.length !== "number" || values.length !== count * d) {
    throw new Failure("BAD_HEADER", `the dataset gave ${values?.length} values for ${count} rows of ${d}`);
  }
  return values instanceof Float32Array ? values.slice() : Float32Array.from(values as ArrayLike<number>, Number);
}

// deno-lint-ignore no-explicit-any
const port = globalThis as any;
port.onmessage = async (event: MessageEvent) => {
  const { id, op } = event.data;
  try {
    if (op === "open") port.postMessage({ id, value: await open(event.data.path, event.data.dataset) });
    else if (op === "rows") {
      const value = rows(event.data.start, event.data.count);
      port.postMessage({ id, value }, [value.buffer]);
    } else if (op === "close") {
      try {
        wrap("close the file", () => file?.close());
      } catch {
        // A file HDF5 found corrupt may fail to close; the Worker ends either way.
      }
      port.postMessage({ id, value: null });
    }
  } catch (error) {
    const code = error instanceof Failure ? error.code : "BAD_HEADER";
    port.postMessage({ id, error: { code, message: (error as Error)?.message ?? String(error) } });
  }
};
port.postMessage({ ready: true });
