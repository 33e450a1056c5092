/**
 * The read operations shared by an Index (live view) and a Snapshot (a point-in-time view):
 * search, searchBatch, get, getRecord, has, count, keys, ids, size. A read without records
 * (numeric ids, no filter, no metadata asked for) is one FFI crossing, as before records
 * existed; ids and metadata cost one more (a read of the results' payloads).
 */
import { native } from "./runtime/loader.ts";
import { limits, searchFlags as flagBits, Status } from "./ffi.gen.ts";
import { plainTyped } from "./arrays.ts";
import { BufferTooSmallError, check, ClosedError, DimensionMismatchError, InvalidArgumentError, InvalidEfError, InvalidKError } from "./errors.ts";
import { hashIds, type Id, idOfKey, keyOfId, keyWords, maybeStringKey, numericIdsInto } from "./ids.ts";
import { compileFilter, decodePayload, type Filter, type Metadata, type RecordSchema } from "./records/mod.ts";

/**
 * Keys and distances of one query, closest first (squared L2, or 1 - dot for ip/cosine), and
 * the results' ids in the form they were added (string ids as strings; numeric ones as
 * numbers when they are safe integers, else bigints). With `includeMetadata`, each result's
 * metadata (undefined for a record stored without).
 */
export interface SearchResult {
  keys: BigUint64Array;
  distances: Float32Array;
  ids: Id[];
  metadata?: (Metadata | undefined)[];
}

/**
 * Results of a batch: query i owns [i*k, i*k + counts[i]) of `keys`, `distances`, `ids` (and
 * `metadata`); `ids` and `metadata` hold undefined past each query's count.
 */
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
  /**
   * Only records that pass this filter (over the fields declared in `indexes`, and `allow`)
   * are results: the walk still routes through the others. When at least k live records
   * match, k are returned. See src/records/filter.ts for the language.
   */
  filter?: Filter;
  /** Return each result's metadata too (`metadata`), read at the search's moment. */
  includeMetadata?: boolean;
}

export interface BatchOptions extends SearchOptions {
  /** Native threads for the batch (default 1; a filtered batch runs its queries one by one). */
  threads?: number;
}

/** What `getRecord` returns: the id (as added), a copy of the vector, the metadata. */
export interface StoredRecord {
  id: Id;
  vector: Float32Array;
  metadata: Metadata | undefined;
}

/** The default options object (frozen: nothing to check). */
const emptyOptions: SearchOptions = Object.freeze({});
const searchOptionKeys = new Set(["ef", "rerank", "filter", "includeMetadata"]);
const batchOptionKeys = new Set([...searchOptionKeys, "threads"]);

/**
 * Throws InvalidArgumentError for an option this call does not know (a misspelt `filter` must
 * not be silently ignored) or options that are not an object. O(options).
 */
export function checkOptionKeys(options: unknown, known: ReadonlySet<string>, call: string): void {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new InvalidArgumentError(`${call} options must be an object, not ${options === null ? "null" : typeof options}`);
  }
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw new InvalidArgumentError(`${call} has no option ${JSON.stringify(key)} (its options: ${[...known].join(", ")})`);
  }
}

/** @internal search options, validated (also by the async forms before they post them). */
export function checkSearchOptions(options: unknown, batch = false): void {
  if (options === emptyOptions) return;
  checkOptionKeys(options, batch ? batchOptionKeys : searchOptionKeys, batch ? "searchBatch" : "search");
  const include = (options as SearchOptions).includeMetadata;
  if (include !== undefined && typeof include !== "boolean") throw new InvalidArgumentError(`includeMetadata = ${String(include)} (expected a boolean)`);
}

function searchFlags(options: SearchOptions): number {
  if (options.rerank === undefined || options.rerank === true) return 0;
  if (options.rerank === false) return flagBits.walkRanking;
  throw new InvalidArgumentError(`rerank = ${String(options.rerank)} (expected a boolean)`);
}

/** Anything array-like of numbers is accepted; Float32Array avoids a copy. */
export type VectorLike = Float32Array | ArrayLike<number>;

/**
 * `vector` as a Float32Array whose `length` is its real one (see arrays.ts): the array itself,
 * or a copy of an array-like of numbers. With `dimensions`, an array-like of another length is
 * a DimensionMismatchError before anything is allocated (a claimed length of 2^32 must not
 * allocate 16 GiB). Elements are read by index (never through an iterator, which need not end)
 * and converted as Float32Array.from would; a bigint or symbol element is InvalidArgumentError.
 */
export function toVector(vector: VectorLike, dimensions?: number): Float32Array {
  const plain = plainTyped<Float32Array>(vector, Float32Array);
  if (plain !== undefined) return plain;
  if (vector === null || typeof vector !== "object") throw new InvalidArgumentError("a vector must be a Float32Array or an array of numbers");
  if (vector instanceof Float32Array) throw new InvalidArgumentError("a vector must be a Float32Array itself, not a Proxy or imitation of one");
  const length = (vector as ArrayLike<number>).length;
  if (typeof length !== "number" || !Number.isSafeInteger(length) || length < 0) {
    throw new InvalidArgumentError("a vector must be a Float32Array or an array of numbers");
  }
  if (dimensions !== undefined && length !== dimensions) throw new DimensionMismatchError(`${length} components for ${dimensions} dimensions`);
  if (length > limits.maxDimensions) throw new DimensionMismatchError(`${length} components (at most ${limits.maxDimensions} dimensions)`);
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    const x: unknown = (vector as ArrayLike<unknown>)[i];
    if (typeof x === "number") out[i] = x;
    else if (typeof x === "bigint" || typeof x === "symbol") throw new InvalidArgumentError(`vector[${i}] is a ${typeof x}, not a number`);
    else out[i] = Number(x);
  }
  return out;
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

/**
 * Result slots a batch may ask for (queries × k): the results take 12 bytes each in typed
 * arrays and one element in each of `ids` (and `metadata`); 2^26 is about 1.3 GB in all, where a
 * few KiB of queries with k = 2^20 would otherwise ask for tens of GB and abort the process
 * (V8's heap limit is fatal, not an exception).
 */
export const batchResultsMax = 1 << 26;

/**
 * @internal The queries of a batch: a Float32Array (its real length, see arrays.ts) holding a
 * whole number of `d`-float queries, whose results (queries × k) fit `batchResultsMax`.
 */
export function checkQueries(batch: unknown, d: number, k: number): Float32Array {
  const queries = plainTyped<Float32Array>(batch, Float32Array);
  if (queries === undefined) throw new InvalidArgumentError("queries must be one flat Float32Array");
  if (queries.length % d !== 0) throw new DimensionMismatchError(`${queries.length} floats is not a multiple of ${d}`);
  const count = queries.length / d;
  if (count * k > batchResultsMax) {
    throw new InvalidArgumentError(`${count} queries with k = ${k} ask for ${count * k} results (at most ${batchResultsMax} per batch): split the batch or lower k`);
  }
  return queries;
}

export function checkThreads(threads: unknown): number {
  if (threads === undefined) return 1;
  if (typeof threads !== "number" || !Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new InvalidArgumentError(`threads = ${String(threads)} (1 to 256)`);
  }
  return threads;
}

/** The length `qv_index_read_records` gives a key with no live record. */
const absent = 0xffff_ffff;
/** Reads of a live index retried when a result's record vanished between two calls. */
const liveAttempts = 3;

/** The payload of each key: bytes (possibly empty: no payload), or null (no live record). */
type Payloads = (Uint8Array | null)[];

/** Ids and metadata of some results, or undefined when one of their records vanished. */
type Described = { ids: Id[]; metadata: (Metadata | undefined)[] | undefined } | undefined;

export abstract class Reader {
  /** Scratch out-parameters, reused: JS is single-threaded per isolate. */
  protected readonly u32Out: Uint32Array = new Uint32Array(1);
  protected readonly u64Out: BigUint64Array = new BigUint64Array(1);
  /** Where searches with k <= 64 write their keys, and its u32 halves (see `numericIdsInto`). */
  readonly #keyScratch = new BigUint64Array(64);
  readonly #keyScratchWords = keyWords(this.#keyScratch);
  /** The payload read buffer, grown on demand (the scratch of `readPayloads`). */
  #payloadBuffer = new Uint8Array(4096);

  protected abstract handleOrThrow(): number;
  protected abstract snapshotHandle(): bigint;
  abstract get dimensions(): number;
  /** The indexed fields (fixed at creation). */
  abstract get schema(): RecordSchema;

  /** A filter's program (InvalidFilterError for a bad one). O(size of the filter). */
  protected compileFilter(filter: unknown): Uint8Array {
    return compileFilter(filter, this.schema, (ids) => hashIds(ids, (i) => `filter.allow: string id ${i}`));
  }

  /**
   * Runs `read` at a point in time: this snapshot's; for the live index first live (`read`
   * returns undefined when a record it needed vanished meanwhile: retried), then, if writers
   * keep getting in the way, inside a transient native snapshot.
   */
  protected consistent<T>(read: (snapshot: bigint) => T | undefined): T {
    const own = this.snapshotHandle();
    if (own !== 0n) {
      const result = read(own);
      // A snapshot's records cannot vanish: nothing else could make `read` give up.
      if (result === undefined) throw new ClosedError("the snapshot's records changed: it was released");
      return result;
    }
    for (let attempt = 0; attempt < liveAttempts; attempt++) {
      const result = read(0n);
      if (result !== undefined) return result;
    }
    const h = this.handleOrThrow();
    const out = new BigUint64Array(1);
    check(native().fn.qv_snapshot_create(h, out));
    try {
      const result = read(out[0]);
      if (result === undefined) throw new ClosedError("records vanished inside a snapshot");
      return result;
    } finally {
      native().fn.qv_snapshot_release(h, out[0]);
    }
  }

  /**
   * The payloads of `keys` at `snapshot` (one FFI call, two when the buffer must grow). The
   * arrays are views of a scratch buffer: decode them before the next read. O(bytes read).
   */
  protected readPayloads(snapshot: bigint, keys: BigUint64Array): Payloads {
    if (keys.length === 0) return [];
    const h = this.handleOrThrow();
    const needed = new BigUint64Array(1);
    for (;;) {
      const buffer = this.#payloadBuffer;
      const status = native().fn.qv_index_read_records(h, snapshot, keys, keys.length, buffer, buffer.length, needed);
      if (status === Status.ok) break;
      if (status !== Status.buffer_too_small) check(status);
      const want = Number(needed[0]);
      if (!(want > buffer.length)) throw new BufferTooSmallError(`read_records asked for ${want} bytes with ${buffer.length}`);
      this.#payloadBuffer = new Uint8Array(Math.max(want, buffer.length * 2));
    }
    const buffer = this.#payloadBuffer;
    const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    const end = Number(needed[0]);
    const out: Payloads = new Array(keys.length);
    let at = 0;
    for (let i = 0; i < keys.length; i++) {
      const length = view.getUint32(at, true);
      at += 4;
      if (length === absent) {
        out[i] = null;
        continue;
      }
      out[i] = buffer.subarray(at, at + length);
      at += length;
    }
    if (at !== end) throw new BufferTooSmallError(`read_records wrote ${end} bytes, read ${at}`);
    return out;
  }

  /**
   * The ids (and, with `withMetadata`, the metadata) of `keys` at `snapshot`: a key without a
   * top bit is numeric without a read unless metadata is asked for. Undefined if a record is
   * not live there (it vanished after the search). O(keys + metadata bytes).
   */
  protected describe(snapshot: bigint, keys: BigUint64Array, withMetadata: boolean): Described {
    const ids: Id[] = new Array(keys.length);
    const wanted: number[] = [];
    for (let i = 0; i < keys.length; i++) {
      ids[i] = idOfKey(keys[i]);
      if (withMetadata || maybeStringKey(keys[i])) wanted.push(i);
    }
    if (wanted.length === 0) return { ids, metadata: withMetadata ? new Array(keys.length).fill(undefined) : undefined };
    const subset = wanted.length === keys.length ? keys : BigUint64Array.from(wanted, (i) => keys[i]);
    const payloads = this.readPayloads(snapshot, subset);
    const metadata: (Metadata | undefined)[] | undefined = withMetadata ? new Array(keys.length).fill(undefined) : undefined;
    for (let j = 0; j < wanted.length; j++) {
      const payload = payloads[j];
      if (payload === null) return undefined;
      if (payload.length === 0) continue;
      const decoded = decodePayload(payload, withMetadata);
      if (decoded.id !== undefined) ids[wanted[j]] = decoded.id;
      if (metadata !== undefined) metadata[wanted[j]] = decoded.metadata;
    }
    return { ids, metadata };
  }

  /**
   * The k nearest neighbours of `query`, with their ids; with `filter`, among the records that
   * pass it; with `includeMetadata`, with their metadata. Unknown options are an
   * InvalidArgumentError; a bad filter an InvalidFilterError. Thread safety: safe beside any
   * other call from any thread or Worker; on the live index, ids and metadata are read at the
   * search's moment (the search is redone if a result was removed between its two calls, and
   * run in a transient snapshot if that keeps happening). Cost: one FFI call, O(ef log n)
   * distance computations (a filter adds O(matching records) to build its bitset, and a
   * selective one scans its matches exactly); one more call when a result may have a string id
   * or metadata is asked for.
   */
  search(query: VectorLike, k: number, options: SearchOptions = emptyOptions): SearchResult {
    checkSearchOptions(options);
    const h = this.handleOrThrow();
    const q = toVector(query, this.dimensions);
    checkK(k);
    const ef = checkEf(options.ef, k);
    const flags = searchFlags(options);
    const program = options.filter === undefined ? undefined : this.compileFilter(options.filter);
    const withMetadata = options.includeMetadata === true;
    // Small k: the keys land in a scratch column whose u32 halves are already viewed, and the
    // result gets a copy (one allocation, as a fresh column would be, without a second view).
    const scratch = k <= this.#keyScratch.length;
    const run = (snapshot: bigint): SearchResult => {
      const out = scratch ? this.#keyScratch : new BigUint64Array(k);
      const distances = new Float32Array(k);
      if (program === undefined) {
        check(native().fn.qv_index_search(h, snapshot, q, q.length, k, ef, flags, out, distances, this.u32Out));
      } else {
        check(native().fn.qv_index_search_filtered(h, snapshot, q, q.length, k, ef, flags, program, program.length, out, distances, this.u32Out));
      }
      const n = this.u32Out[0];
      const keys = scratch ? out.slice(0, n) : n === k ? out : out.subarray(0, n);
      return { keys, distances: n === k ? distances : distances.subarray(0, n), ids: [] };
    };
    // The common case in one FFI call: numeric keys (no top bit), no metadata asked for.
    const first = run(this.snapshotHandle());
    if (!withMetadata) {
      const keys = first.keys;
      const ids: Id[] = new Array(keys.length);
      const words = scratch ? this.#keyScratchWords : keyWords(keys);
      if (numericIdsInto(keys, words, 0, keys.length, ids, 0)) {
        first.ids = ids;
        return first;
      }
    }
    let attempt: SearchResult | undefined = first;
    return this.consistent((snapshot) => {
      const result = attempt ?? run(snapshot);
      attempt = undefined;
      const described = this.describe(snapshot, result.keys, withMetadata);
      if (described === undefined) return undefined;
      result.ids = described.ids;
      if (withMetadata) result.metadata = described.metadata;
      return result;
    });
  }

  /**
   * Searches many queries (one flat Float32Array, `dimensions` floats each) in one FFI call on
   * up to `threads` native threads; a `filter` is compiled and matched once for the whole batch.
   * Thread safety: as `search`. Cost: the sum of the searches (plus one match of the filter),
   * plus one read of the results' payloads when ids may be strings or metadata is asked for.
   */
  searchBatch(batch: Float32Array, k: number, options: BatchOptions = {}): BatchResult {
    checkSearchOptions(options, true);
    const h = this.handleOrThrow();
    checkK(k);
    const ef = checkEf(options.ef, k);
    const threads = checkThreads(options.threads);
    const flags = searchFlags(options);
    const queries = checkQueries(batch, this.dimensions, k);
    const d = this.dimensions;
    const program = options.filter === undefined ? undefined : this.compileFilter(options.filter);
    const withMetadata = options.includeMetadata === true;
    const count = queries.length / d;
    return this.consistent((snapshot) => {
      const keys = new BigUint64Array(count * k);
      const distances = new Float32Array(count * k);
      const counts = new Uint32Array(count);
      if (program === undefined) {
        check(native().fn.qv_index_search_batch(h, snapshot, queries, queries.length, count, k, ef, flags, threads, keys, distances, counts));
      } else {
        check(native().fn.qv_index_search_batch_filtered(h, snapshot, queries, queries.length, count, k, ef, flags, threads, program, program.length, keys, distances, counts));
      }
      const ids: Id[] = new Array(count * k).fill(undefined);
      if (!withMetadata) {
        // The common case: numeric keys, no read; each query's filled run converted in place.
        const words = keyWords(keys);
        let numeric = true;
        for (let i = 0; i < count && numeric; i++) numeric = numericIdsInto(keys, words, i * k, counts[i], ids, i * k);
        if (numeric) return { keys, distances, counts, k, ids };
        (ids as (Id | undefined)[]).fill(undefined);
      }
      // The filled positions, described in one read.
      const filled: number[] = [];
      for (let i = 0; i < count; i++) for (let j = 0; j < counts[i]; j++) filled.push(i * k + j);
      const described = this.describe(snapshot, BigUint64Array.from(filled, (p) => keys[p]), withMetadata);
      if (described === undefined) return undefined;
      const metadata: (Metadata | undefined)[] | undefined = withMetadata ? new Array(count * k).fill(undefined) : undefined;
      for (let j = 0; j < filled.length; j++) {
        ids[filled[j]] = described.ids[j];
        if (metadata !== undefined) metadata[filled[j]] = described.metadata![j];
      }
      const result: BatchResult = { keys, distances, counts, k, ids };
      if (metadata !== undefined) result.metadata = metadata;
      return result;
    });
  }

  /**
   * A copy of the stored vector of `id` (unit length under cosine), or undefined. A string id
   * reads its record (`getRecord`). Thread safety: safe beside every call. O(d).
   */
  get(id: Id): Float32Array | undefined {
    if (typeof id === "string") return this.getRecord(id)?.vector;
    const h = this.handleOrThrow();
    const out = new Float32Array(this.dimensions);
    const status = native().fn.qv_index_get(h, this.snapshotHandle(), keyOfId(id), out, out.length);
    if (status === Status.not_found) return undefined;
    check(status);
    return out;
  }

  /**
   * The record of `id`: its id, a copy of its vector and its metadata (undefined if it has
   * none), or undefined when no live record has this id. Thread safety: safe beside every call.
   * On the live index the vector and metadata are of one moment: the payload is read before
   * and after the vector and the read is redone if an update got in between (after three
   * tries, in a transient snapshot). Cost: three FFI calls, O(d + metadata bytes).
   */
  getRecord(id: Id): StoredRecord | undefined {
    const key = keyOfId(id);
    const h = this.handleOrThrow();
    const keys = BigUint64Array.of(key);
    const found = this.consistent((snapshot): StoredRecord | null | undefined => {
      const before = this.readPayloads(snapshot, keys)[0]?.slice() ?? null;
      if (before === null) return null;
      const decoded = decodePayload(before);
      // The id must be the one stored: a string id's key held by a numeric id, or the
      // reverse, is not this record.
      if ((typeof id === "string") !== (decoded.id !== undefined) || (typeof id === "string" && decoded.id !== id)) return null;
      const vector = new Float32Array(this.dimensions);
      const status = native().fn.qv_index_get(h, snapshot, key, vector, vector.length);
      if (status === Status.not_found) return snapshot === 0n ? undefined : null;
      check(status);
      if (snapshot === 0n) {
        // Same payload bytes after the vector: no upsert or update landed between the reads
        // (short of two that restore identical bytes within microseconds).
        const after = this.readPayloads(snapshot, keys)[0];
        if (after === null || after.length !== before.length || !after.every((b, i) => b === before[i])) return undefined;
      }
      return { id: decoded.id ?? idOfKey(key), vector, metadata: decoded.metadata };
    });
    return found ?? undefined;
  }

  /**
   * Whether a live record has `id` (a string id: the one stored under its key). Thread safety:
   * safe beside every call. O(1) (a string id reads its payload: O(its size)).
   */
  has(id: Id): boolean {
    const h = this.handleOrThrow();
    if (typeof id !== "string") {
      check(native().fn.qv_index_has(h, this.snapshotHandle(), keyOfId(id), this.u32Out));
      return this.u32Out[0] === 1;
    }
    const payload = this.readPayloads(this.snapshotHandle(), BigUint64Array.of(keyOfId(id)))[0];
    return payload !== null && payload.length > 0 && decodePayload(payload, false).id === id;
  }

  /** The number of live keys. O(1). */
  get size(): number {
    const h = this.handleOrThrow();
    check(native().fn.qv_index_size(h, this.snapshotHandle(), this.u64Out));
    return Number(this.u64Out[0]);
  }

  /**
   * The number of live records, or with `filter` of those that pass it (InvalidFilterError for
   * a bad one). Thread safety: safe beside every call. Cost: O(1) without a filter; with one,
   * one FFI call that builds the filter's bitset, O(matching records + slots / 64).
   */
  count(filter?: Filter): number {
    if (filter === undefined) return this.size;
    const program = this.compileFilter(filter);
    check(native().fn.qv_index_count_matching(this.handleOrThrow(), this.snapshotHandle(), program, program.length, this.u64Out));
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

  /**
   * Every live id, in the form it was added, in storage order (of one moment on the live
   * index). Thread safety: safe beside every call. Cost: `keys()` plus a read of the payloads
   * of the keys that may be string ids' (two or three FFI calls), O(slots).
   */
  ids(): Id[] {
    return this.consistent((snapshot) => {
      const h = this.handleOrThrow();
      let keys: BigUint64Array;
      for (;;) {
        check(native().fn.qv_index_size(h, snapshot, this.u64Out));
        const guess = Number(this.u64Out[0]) + 16;
        const out = new BigUint64Array(guess);
        check(native().fn.qv_index_keys(h, snapshot, out, out.length, this.u64Out));
        const total = Number(this.u64Out[0]);
        if (total <= guess) {
          keys = out.subarray(0, total);
          break;
        }
      }
      return this.describe(snapshot, keys, false)?.ids;
    });
  }
}

export function closedError(what: string): never {
  throw new ClosedError(`this ${what} was closed`);
}
