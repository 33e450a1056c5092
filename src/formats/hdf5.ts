/**
 * ann-benchmarks HDF5 files (https://github.com/erikbern/ann-benchmarks): datasets `train`
 * (the base vectors), `test` (queries), `neighbors` and `distances` (ground truth), and the
 * attribute `distance` ("euclidean", "angular", "dot", ...). Read through h5wasm, the HDF5 C
 * library compiled to WebAssembly (a maintained reader, loaded on first use so that users who
 * never read HDF5 need not install it), in a Worker (see openHdf5). Rows are read a batch at a
 * time by hyperslab.
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

/** Loads h5wasm in this thread (for writeHdf5 only: reads go through the Worker). */
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

/** Milliseconds one HDF5 call may take before the file is declared corrupt (default 30 s). */
function callTimeoutMs(): number {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  const raw = g.process?.env?.QUIVER_HDF5_TIMEOUT_MS ?? g.Deno?.env?.get?.("QUIVER_HDF5_TIMEOUT_MS");
  const value = Number(raw);
  return raw !== undefined && Number.isFinite(value) && value > 0 ? value : 30_000;
}

/**
 * Where the Worker's module is. In a `bun build --compile` binary every module is bundled into
 * one file, so `import.meta.url` names the binary's entry; the Worker is then the second entry
 * point of the build (`bun build --compile cli/quiver.ts src/formats/hdf5_worker.ts`), which
 * Bun finds by its path from the project root.
 */
function workerUrl(): string {
  if (import.meta.url.includes("$bunfs")) return "./src/formats/hdf5_worker.ts";
  return new URL("./hdf5_worker.ts", import.meta.url).href;
}

/** The h5wasm Worker: one request at a time, each bounded by the timeout. */
class Hdf5Worker {
  readonly #worker: Worker;
  #path: string;
  #next = 0;
  #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #ready: Promise<void>;
  #dead: Error | undefined;

  constructor(path: string) {
    this.#path = path;
    this.#worker = new Worker(workerUrl(), { type: "module" });
    let ready!: () => void;
    this.#ready = new Promise<void>((resolve) => (ready = resolve));
    this.#worker.onmessage = (event: MessageEvent) => {
      const data = event.data;
      if (data?.ready) return ready();
      const waiter = this.#pending.get(data.id);
      if (!waiter) return;
      this.#pending.delete(data.id);
      if (data.error) waiter.reject(new FormatError(data.error.code, this.#path, data.error.message));
      else waiter.resolve(data.value);
    };
    this.#worker.onerror = (event: ErrorEvent) => {
      event.preventDefault?.();
      const message = String(event.message ?? event);
      this.#fail(
        /ModuleNotFound|Cannot find module|Module not found/i.test(message)
          ? new Error(`the HDF5 reader's Worker module is missing (${message}): a single binary needs it as a second entry point, ` +
            `bun build --compile cli/quiver.ts src/formats/hdf5_worker.ts`)
          : new FormatError("BAD_HEADER", this.#path, `the HDF5 reader crashed (${message}): the file is corrupt or not HDF5`),
      );
    };
  }

  #fail(error: Error): void {
    this.#dead ??= error;
    for (const waiter of this.#pending.values()) waiter.reject(error);
    this.#pending.clear();
    this.#worker.terminate();
  }

  /** One request; the timeout covers the Worker's start too (a Worker that never loads fails). */
  async call<T>(message: Record<string, unknown>, what: string): Promise<T> {
    if (this.#dead) throw this.#dead;
    const id = this.#next++;
    const timeoutMs = callTimeoutMs();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await new Promise<T>((resolve, reject) => {
        this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        timer = setTimeout(() => {
          this.#fail(new FormatError(
            "BAD_HEADER",
            this.#path,
            `HDF5 did not ${what} within ${timeoutMs / 1000} s: the file is corrupt (HDF5 loops on some damage); ` +
              `set QUIVER_HDF5_TIMEOUT_MS if it is merely huge`,
          ));
        }, timeoutMs);
        this.#ready.then(() => this.#worker.postMessage({ id, ...message }));
      });
    } finally {
      clearTimeout(timer);
    }
  }

  get alive(): boolean {
    return this.#dead === undefined;
  }

  /** Hands the Worker to the next file (its messages then name that file). */
  reuse(path: string): void {
    this.#path = path;
  }

  /**
   * Closes the file and puts the Worker back in the pool at once: it handles messages in order,
   * so the next file's open waits behind this close (and times out if the close hangs).
   */
  close(): void {
    if (this.#dead) return;
    this.#worker.postMessage({ id: -1, op: "close" });
    release(this);
  }

  terminate(): void {
    this.#dead ??= new Error(`${this.#path}: read after close`);
    this.#worker.terminate();
  }
}

// One idle Worker is kept for 2 s after a file closes, so that opening files one after another
// (a fuzz run, a build then a search) loads h5wasm once rather than per file.
let idle: Hdf5Worker | undefined;
let idleTimer: ReturnType<typeof setTimeout> | undefined;

function acquire(path: string): Hdf5Worker {
  const worker = idle;
  idle = undefined;
  clearTimeout(idleTimer);
  if (worker?.alive) {
    worker.reuse(path);
    return worker;
  }
  return new Hdf5Worker(path);
}

function release(worker: Hdf5Worker): void {
  if (!worker.alive) return;
  if (idle !== undefined) return worker.terminate();
  idle = worker;
  idleTimer = setTimeout(() => {
    idle?.terminate();
    idle = undefined;
  }, 2000);
}

/**
 * Opens one 2-D numeric dataset of an HDF5 file (default `train`). Integer datasets are
 * converted to float32. h5wasm runs in a Worker of its own: a call that takes longer than
 * QUIVER_HDF5_TIMEOUT_MS (default 30 s) ends it and throws FormatError, because HDF5 can loop
 * forever on some corrupt files. Cost: a Worker and h5wasm's load (about 4 MB of WebAssembly)
 * per open; O(n * d) to read, one batch in memory plus one copy across the Worker boundary.
 */
export async function openHdf5(path: string, options: Hdf5Options = {}): Promise<Hdf5Source> {
  if (!existsSync(path)) throw new FormatError("BAD_HEADER", path, "no such file");
  const bytes = statSync(path).size;
  const head = new Uint8Array(8);
  const fd = fs.openSync(path, "r");
  fs.readSync(fd, head, 0, 8, 0);
  fs.closeSync(fd);
  // HDF5 files start with this signature (at offset 0 unless a user block precedes it).
  const signature = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];
  if (signature.some((b, i) => head[i] !== b)) throw new FormatError("BAD_HEADER", path, "no HDF5 signature: not an HDF5 file", 0);
  const worker = acquire(path);
  const name = options.dataset ?? "train";
  let shape: { count: number; dimensions: number; distance: string | undefined; datasets: string[] };
  try {
    shape = await worker.call({ op: "open", path, dataset: name }, "open the file");
  } catch (error) {
    worker.close();
    throw error;
  }
  const { count, dimensions } = shape;
  const rows = async (start: number, n: number): Promise<VectorBatch> => {
    const vectors = await worker.call<Float32Array>({ op: "rows", start, count: n }, `read rows ${start}..${start + n}`);
    checkFinite(vectors, dimensions, start, path);
    return { start, count: n, vectors, bytesRead: Math.round((bytes * (start + n)) / Math.max(count, 1)) };
  };
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    worker.close();
  };
  return {
    format: "hdf5",
    path,
    dimensions,
    count,
    bytes,
    distance: shape.distance,
    datasets: shape.datasets,
    async *batches(batchSize = DEFAULT_BATCH) {
      for (let start = 0; start < count; start += batchSize) yield await rows(start, Math.min(batchSize, count - start));
    },
    row(index: number) {
      if (!Number.isInteger(index) || index < 0 || index >= count) {
        throw new RangeError(`${path}: row ${index} is out of range (dataset "${name}" has ${count} rows)`);
      }
      return rows(index, 1);
    },
    close,
    [Symbol.dispose]: close,
  };
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
