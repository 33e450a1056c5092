/**
 * The read operations shared by an Index (live view) and a Snapshot (a point-in-time view):
 * search, searchBatch, get, has, keys, size. Each call is one FFI crossing.
 */
import { native } from "./runtime/loader.ts";
import { searchFlags as flagBits, Status } from "./ffi.gen.ts";
import { check, ClosedError, DimensionMismatchError, InvalidKError, InvalidEfError, InvalidArgumentError } from "./errors.ts";
import { type Key, toKey } from "./keys.ts";

/** Keys and distances of one query, closest first (squared L2, or 1 - dot for ip/cosine). */
export interface SearchResult {
  keys: BigUint64Array;
  distances: Float32Array;
}

/** Results of a batch: query i owns [i*k, i*k + counts[i]) of `keys` and `distances`. */
export interface BatchResult extends SearchResult {
  counts: Uint32Array;
  k: number;
}

export interface SearchOptions {
  /** Beam width (>= k); defaults to the index's `ef`. Larger is slower and more accurate. */
  ef?: number;
  /**
   * f16 and i8 storage: rerank the best candidates on the exact f32 vectors (default true).
   * With false, results are ranked, and distances reported, by the walk's quantized distances:
   * faster, no read of the `.vectors` file (which then need not stay in memory), at a lower
   * recall ceiling. No effect under f32 storage, whose walk distances are exact.
   */
  rerank?: boolean;
}

function searchFlags(options: SearchOptions): number {
  if (options.rerank === undefined || options.rerank === true) return 0;
  if (options.rerank === false) return flagBits.walkRanking;
  throw new InvalidArgumentError(`rerank = ${String(options.rerank)} (expected a boolean)`);
}

export interface BatchOptions extends SearchOptions {
  /** Native threads for the batch (default 1). */
  threads?: number;
}

/** Anything array-like of numbers is accepted; Float32Array avoids a copy. */
export type VectorLike = Float32Array | ArrayLike<number>;

export function toVector(vector: VectorLike): Float32Array {
  if (vector instanceof Float32Array) return vector;
  if (vector === null || typeof vector !== "object" || typeof (vector as ArrayLike<number>).length !== "number") {
    throw new InvalidArgumentError("a vector must be a Float32Array or an array of numbers");
  }
  return Float32Array.from(vector as ArrayLike<number>);
}

export function checkK(k: unknown): number {
  if (typeof k !== "number" || !Number.isInteger(k) || k <= 0 || k > 1 << 20) {
    throw new InvalidKError(`k = ${String(k)}`);
  }
  return k;
}

export function checkEf(ef: unknown, k: number): number {
  if (ef === undefined) return 0;
  if (typeof ef !== "number" || !Number.isInteger(ef) || ef < k || ef > 1 << 20) {
    throw new InvalidEfError(`ef = ${String(ef)} with k = ${k}`);
  }
  return ef;
}

export function checkThreads(threads: unknown): number {
  if (threads === undefined) return 1;
  if (typeof threads !== "number" || !Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new InvalidArgumentError(`threads = ${String(threads)} (1 to 256)`);
  }
  return threads;
}

export abstract class Reader {
  /** Scratch out-parameters, reused: JS is single-threaded per isolate. */
  protected readonly u32Out: Uint32Array = new Uint32Array(1);
  protected readonly u64Out: BigUint64Array = new BigUint64Array(1);

  protected abstract handleOrThrow(): number;
  protected abstract snapshotHandle(): bigint;
  abstract get dimensions(): number;

  /**
   * The k nearest neighbours of `query`. Thread safety: safe beside any other call from any
   * thread or Worker. Cost: one FFI call, O(ef log n) distance computations.
   */
  search(query: VectorLike, k: number, options: SearchOptions = {}): SearchResult {
    const h = this.handleOrThrow();
    const q = toVector(query);
    checkK(k);
    const ef = checkEf(options.ef, k);
    const keys = new BigUint64Array(k);
    const distances = new Float32Array(k);
    check(native().fn.qv_index_search(h, this.snapshotHandle(), q, q.length, k, ef, searchFlags(options), keys, distances, this.u32Out));
    const n = this.u32Out[0];
    return n === k ? { keys, distances } : { keys: keys.subarray(0, n), distances: distances.subarray(0, n) };
  }

  /**
   * Searches many queries (one flat Float32Array, `dimensions` floats each) in one FFI call on
   * up to `threads` native threads. Thread safety: as `search`. Cost: the sum of the searches.
   */
  searchBatch(queries: Float32Array, k: number, options: BatchOptions = {}): BatchResult {
    const h = this.handleOrThrow();
    checkK(k);
    const ef = checkEf(options.ef, k);
    const threads = checkThreads(options.threads);
    const flags = searchFlags(options);
    if (!(queries instanceof Float32Array)) throw new InvalidArgumentError("queries must be one flat Float32Array");
    const d = this.dimensions;
    if (queries.length % d !== 0) throw new DimensionMismatchError(`${queries.length} floats is not a multiple of ${d}`);
    const count = queries.length / d;
    const keys = new BigUint64Array(count * k);
    const distances = new Float32Array(count * k);
    const counts = new Uint32Array(count);
    check(native().fn.qv_index_search_batch(h, this.snapshotHandle(), queries, queries.length, count, k, ef, flags, threads, keys, distances, counts));
    return { keys, distances, counts, k };
  }

  /** A copy of the stored vector of `key` (unit length under cosine), or undefined. O(d). */
  get(key: Key): Float32Array | undefined {
    const h = this.handleOrThrow();
    const out = new Float32Array(this.dimensions);
    const status = native().fn.qv_index_get(h, this.snapshotHandle(), toKey(key), out, out.length);
    if (status === Status.not_found) return undefined;
    check(status);
    return out;
  }

  /** Whether `key` is present (not removed). O(1). */
  has(key: Key): boolean {
    const h = this.handleOrThrow();
    check(native().fn.qv_index_has(h, this.snapshotHandle(), toKey(key), this.u32Out));
    return this.u32Out[0] === 1;
  }

  /** The number of live keys. O(1). */
  get size(): number {
    const h = this.handleOrThrow();
    check(native().fn.qv_index_size(h, this.snapshotHandle(), this.u64Out));
    return Number(this.u64Out[0]);
  }

  /** Every live key, in storage order. O(slots). */
  keys(): BigUint64Array {
    const h = this.handleOrThrow();
    for (;;) {
      const guess = this.size + 16;
      const out = new BigUint64Array(guess);
      check(native().fn.qv_index_keys(h, this.snapshotHandle(), out, out.length, this.u64Out));
      const total = Number(this.u64Out[0]);
      if (total <= guess) return out.subarray(0, total);
    }
  }
}

export function closedError(what: string): never {
  throw new ClosedError(`this ${what} was closed`);
}
