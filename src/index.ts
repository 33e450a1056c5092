/**
 * The Index: one HNSW index, in memory or persisted, usable from many threads and Workers.
 * The wrapper owns one native reference, guards every call against use after close, and owns
 * the zero-copy views and snapshots made from it (closing the index revokes them).
 */
import { native } from "./runtime/loader.ts";
import { layouts, limits, Metric as MetricCode, optionFlags, Status, StorageKind } from "./ffi.gen.ts";
import { check, InvalidArgumentError, InvalidDimensionsError, InvalidHandleError, NotFoundError, UnknownMetricError } from "./errors.ts";
import { toKey } from "./keys.ts";
import { type Id, keyOfId, resolveIds } from "./ids.ts";
import { decode, encode } from "./structs.ts";
import { plainTyped } from "./arrays.ts";
import { type BatchOptions, type BatchResult, checkOptionKeys, checkThreads, closedError, Reader, type SearchOptions, type SearchResult, toVector, type VectorLike } from "./reader.ts";
import { encodePayload, encodePayloads, type Filter, idBytes, type Indexes, type MetadataInput, RecordSchema } from "./records/mod.ts";
import { VectorView } from "./view.ts";
import { Snapshot } from "./snapshot.ts";
import * as async from "./async/api.ts";

/** The distance: "l2" (squared euclidean), "ip" (1 - dot) or "cosine" (1 - cosine). */
export type Metric = "l2" | "ip" | "cosine";
/** The public metric names; the codes come from native/abi.zig (through ffi.gen.ts). */
const metrics: Record<Metric, number> = { l2: MetricCode.l2sq, ip: MetricCode.ip, cosine: MetricCode.cosine };
/** How vectors are stored and walked (see IndexOptions.storage). */
export type Storage = keyof typeof StorageKind;
const storages: Record<string, number> = StorageKind;

export interface IndexOptions {
  /** Vector length, 1 to 65536 (`limits.maxDimensions` of the native table). */
  dimensions: number;
  /** "l2" (squared euclidean, the default), "ip" (1 - dot) or "cosine" (1 - cosine). */
  metric?: Metric;
  /** Graph degree M, 2 to 128 (default 16; level 0 keeps 2M). */
  m?: number;
  /** Beam width while inserting (default 128). */
  efConstruction?: number;
  /** Default beam width while searching (default 64). */
  ef?: number;
  /** Seed of the level generator: the same data and seed give the same graph (default 42). */
  seed?: number;
  /** Slots to reserve up front (the index grows by itself). */
  capacity?: number;
  /**
   * "f32" (default) walks the graph on the stored vectors. "f16" walks half-precision copies
   * (half the bytes per visited node) and reranks the candidates against the f32 vectors, which
   * it keeps in a file of their own: faster search, 2 bytes more per dimension; components must
   * stay within ±65504. "i8" walks 8-bit codes (a quarter of f32's bytes, integer SIMD) and
   * reranks the same way; see `centre`. "rabitq" walks i8 codes too, and each node's record also
   * holds a 1-bit RaBitQ code of the edge to each of its neighbours (d/8 + 12 bytes per slot,
   * 2m slots, d padded to 64): a search scores all of a node's neighbours from that one record and
   * reads a neighbour's own record only when it can still enter the results. At most 4096
   * dimensions. Records are several times i8's.
   */
  storage?: Storage;
  /**
   * storage "i8" and "rabitq": the per-dimension centre the codes are taken around (each vector is coded as
   * its difference from the centre, at its own scale, so nothing is ever clipped). Default:
   * the mean of the vectors of the first `add` call, which should then be a representative
   * batch. Fixed once the first vector is coded; reopening with the same centre is allowed.
   */
  centre?: VectorLike;
  /**
   * The metadata fields to index, fixed at creation: `{ lang: "keyword", year: "number" }`.
   * Only indexed fields can be filtered; their values must have the declared type (keyword: a
   * string or an array of strings; number: a finite number or an array of them). Up to 32
   * fields, names of 1 to 64 bytes (not `allow`, not starting with `$`). Reopening with a
   * different `indexes` is an InvalidArgumentError; leaving it out keeps the stored one.
   */
  indexes?: Indexes;
}

export interface OpenOptions extends Partial<IndexOptions> {
  /** Open without writing; several read-only opens may share the files. */
  readOnly?: boolean;
  /** Create the index if it does not exist (default true; needs `dimensions`). */
  create?: boolean;
  /** "fast" (default) checks headers and metadata; "full" also checksums every byte. */
  validate?: "fast" | "full";
}

export interface AddOptions {
  /** Native threads for a batch (default 1). */
  threads?: number;
  /** A batch: the metadata of each record (as many as ids; undefined entries have none). */
  metadata?: readonly (MetadataInput | undefined)[];
}

/** `update(id, { metadata })`: the record's new metadata (replacing the old as a whole). */
export interface UpdateOptions {
  metadata: MetadataInput;
}

const indexOptionKeys = new Set(["dimensions", "metric", "m", "efConstruction", "ef", "seed", "capacity", "storage", "centre", "indexes"]);
const openOptionKeys = new Set([...indexOptionKeys, "readOnly", "create", "validate"]);
const validations = new Set([undefined, "fast", "full"]);

/** Unknown keys (a misspelt `metrc` silently meant the default) and a bad `validate` throw. */
function checkOpenOptions(options: OpenOptions, where: string): void {
  if (options === null || typeof options !== "object") throw new InvalidArgumentError(`${where} options must be an object`);
  checkOptionKeys(options, openOptionKeys, where);
  if (!validations.has(options.validate)) throw new InvalidArgumentError(`validate must be "fast" or "full", not ${JSON.stringify(options.validate)}`);
}

const addOptionKeys = new Set(["threads", "metadata"]);
const compactOptionKeys = new Set(["threads"]);

/** `stats()`: one number per field of the native Stats struct (see README). */
export type Stats = { [K in keyof typeof layouts.Stats.fields]: number };
/** `verify()`: the integrity walk's counts, and whether all of them are clean. */
export type VerifyReport = { [K in Exclude<keyof typeof layouts.VerifyReport.fields, "ok">]: number } & { ok: boolean };

const decodeStats = (bytes: Uint8Array): Stats => decode(layouts.Stats, bytes);

/** The stored schema of an index (one or two FFI calls). */
function readSchema(handle: number): RecordSchema {
  let out = new Uint8Array(256);
  const length = new Uint32Array(1);
  for (;;) {
    const status = native().fn.qv_index_schema(handle, out, out.length, length);
    if (status === Status.ok) return RecordSchema.decode(out.subarray(0, length[0]));
    if (length[0] <= out.length) check(status);
    out = new Uint8Array(length[0]);
  }
}
const decodeReport = (bytes: Uint8Array): VerifyReport => {
  const r = decode(layouts.VerifyReport, bytes);
  return { ...r, ok: r.ok === 1 };
};

const registry = new FinalizationRegistry<number>((handle) => {
  // An owner dropped without close(): close the index for every Worker and release the owner's
  // reference (a leak backstop only; views and snapshots still alive keep what they use).
  native().fn.qv_index_close(handle);
  native().fn.qv_index_release(handle);
});

/** Whether this code runs in a Worker (whose isolate may be terminated with its views alive). */
const inWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== "undefined";

function intOption(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} = ${String(value)} (expected an integer in [${min}, ${max}])`);
  }
  return value;
}

/** @internal The flags of `Index.open` (also used by the async open on a Worker). */
export function openFlags(options: OpenOptions): number {
  let flags = 0;
  if (options.readOnly) flags |= optionFlags.readOnly;
  if (options.create !== false && !options.readOnly) flags |= optionFlags.create;
  if (options.metric !== undefined) flags |= optionFlags.metricGiven;
  if (options.storage !== undefined) flags |= optionFlags.storageGiven;
  return flags;
}

/** @internal The native Options struct (also used by the async open on a Worker). */
export function encodeOptions(options: Partial<IndexOptions>, flags: number): Uint8Array {
  if (options.dimensions !== undefined) {
    const d = options.dimensions;
    if (typeof d !== "number" || !Number.isInteger(d) || d < 1 || d > limits.maxDimensions) {
      throw new InvalidDimensionsError(`dimensions = ${String(d)}`);
    }
  }
  const metric = options.metric ?? "l2";
  if (typeof metric !== "string" || !Object.hasOwn(metrics, metric)) throw new UnknownMetricError(`"${String(metric)}" (use "l2", "ip" or "cosine")`);
  const storage = options.storage ?? "f32";
  if (typeof storage !== "string" || !Object.hasOwn(storages, storage)) {
    throw new InvalidArgumentError(`storage "${String(storage)}" (use ${Object.keys(storages).map((k) => `"${k}"`).join(", ")})`);
  }
  if (storage === "rabitq" && options.dimensions !== undefined && options.dimensions > limits.maxRabitqDimensions) {
    throw new InvalidDimensionsError(`dimensions = ${options.dimensions}: storage "rabitq" takes at most ${limits.maxRabitqDimensions}`);
  }
  return encode(layouts.Options, {
    storage: storages[storage],
    dimensions: options.dimensions ?? 0,
    metric: metrics[metric],
    m: intOption(options.m, "m", 16, 2, limits.maxM),
    ef_construction: intOption(options.efConstruction, "efConstruction", 128, 1, 65536),
    ef_search: intOption(options.ef, "ef", 64, 1, 65536),
    flags,
    seed: intOption(options.seed, "seed", 42, 0, Number.MAX_SAFE_INTEGER),
    capacity: intOption(options.capacity, "capacity", 0, 0, 2 ** 32),
  });
}

export class Index extends Reader {
  #handle: number | undefined;
  readonly #owner: boolean;
  readonly #dimensions: number = 0;
  /** The owner's zero-copy read of the epoch word (the owner's reference keeps it valid). */
  #epoch: BigUint64Array = new BigUint64Array(1);
  /** An attached wrapper's last epoch read through FFI: it holds no reference (see attach). */
  #epochSeen = 0n;
  readonly #epochOut = new BigUint64Array(1);
  /** Whether the index takes writes (views of a read-only one are copies). */
  readonly #writable: boolean = false;
  /** Held weakly, so that a dropped view or snapshot can be collected (and release its pin). */
  #views = new Set<WeakRef<VectorView>>();
  #snapshots = new Set<WeakRef<Snapshot>>();
  /** The indexed fields, read from the index once (they are fixed at its creation). */
  #schema: RecordSchema = RecordSchema.empty;

  /** Creates an empty in-memory index. */
  constructor(options: IndexOptions);
  /** @internal */
  constructor(options: IndexOptions, handle: number, owner: boolean);
  constructor(options: IndexOptions, handle?: number, owner = true) {
    super();
    if (handle === undefined) {
      if (options === null || typeof options !== "object") throw new InvalidArgumentError("options are required");
      checkOptionKeys(options, indexOptionKeys, "new Index");
      if (options.dimensions === undefined) throw new InvalidDimensionsError("dimensions is required");
      // Validated before anything is created.
      if (options.indexes !== undefined) RecordSchema.fromIndexes(options.indexes);
      const out = new Uint32Array(1);
      check(native().fn.qv_index_create(encodeOptions(options, 0), out));
      handle = out[0];
    }
    this.#handle = handle;
    this.#owner = owner;
    if (owner) registry.register(this, handle, this);
    // Any failure from here on (a bad centre, the index closed by its owner on another thread)
    // gives the reference back now, not at garbage collection.
    try {
      const stats = this.stats();
      this.#dimensions = stats.dimensions;
      check(native().fn.qv_index_writable(handle, this.u32Out));
      this.#writable = this.u32Out[0] === 1;
      if (options.centre !== undefined) {
        const centre = toVector(options.centre, this.#dimensions);
        check(native().fn.qv_index_set_centre(handle, centre, centre.length));
      }
      this.#schema = this.#settleSchema(handle, options.indexes);
      if (owner) {
        const address = new BigUint64Array(1);
        check(native().fn.qv_index_epoch_address(handle, address));
        this.#epoch = new BigUint64Array(native().view(address[0], 8));
      } else {
        this.#epochSeen = BigInt(stats.epoch);
      }
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /**
   * The schema of the index: the stored one, after setting `indexes` on an index that has none
   * yet (a new one). InvalidArgumentError when `indexes` differs from the stored schema.
   */
  #settleSchema(handle: number, indexes: Indexes | undefined): RecordSchema {
    const stored = readSchema(handle);
    if (indexes === undefined) return stored;
    const wanted = RecordSchema.fromIndexes(indexes);
    if (wanted.equals(stored)) return stored;
    const show = (s: RecordSchema) => JSON.stringify(s.toIndexes());
    if (stored.fields.length > 0) {
      throw new InvalidArgumentError(`indexes ${show(wanted)} differ from the index's ${show(stored)}, fixed at its creation (leave indexes out to use the stored ones)`);
    }
    const status = native().fn.qv_index_set_schema(handle, wanted.bytes, wanted.bytes.length);
    if (status === Status.busy || status === Status.read_only) {
      const why = status === Status.busy ? "it already holds records" : "it is open read-only";
      throw new InvalidArgumentError(`indexes ${show(wanted)}: the index has none, and ${why}; indexes are declared when an index is created`);
    }
    check(status);
    return wanted;
  }

  /**
   * The current epoch: the owner reads the native word in place; an attached wrapper (which
   * holds no reference, so the index may be gone) asks through FFI and, once the index is
   * closed, keeps the last epoch it saw (its views stay readable: their pins hold the memory).
   */
  #epochNow(): bigint {
    if (this.#owner) return this.#epoch[0];
    const h = this.#handle;
    if (h !== undefined && native().fn.qv_index_epoch(h, this.#epochOut) === Status.ok) this.#epochSeen = this.#epochOut[0];
    return this.#epochSeen;
  }

  /**
   * Opens the persistent index at `path` (files `path`, `path.graph`, `path.upper`, `path.wal`),
   * creating it if needed. Maps the files; reads no vector. Throws LockedError if another writer
   * has it open, CorruptIndexError / UnsupportedVersionError for bad files.
   */
  static open(path: string, options: OpenOptions = {}): Index {
    if (typeof path !== "string" || path.length === 0) throw new InvalidArgumentError("path must be a non-empty string");
    checkOpenOptions(options, "open");
    if (options.indexes !== undefined) RecordSchema.fromIndexes(options.indexes);
    const flags = openFlags(options);
    const bytes = new TextEncoder().encode(path);
    const out = new Uint32Array(1);
    const validation = options.validate === "full" ? 1 : 0;
    check(native().fn.qv_index_open(bytes, bytes.length, encodeOptions(options, flags), validation, out), path);
    return new Index({ dimensions: 0, centre: options.centre, indexes: options.indexes }, out[0], true);
  }

  /**
   * `open` on a Worker of the async pool, with `validate: "full"` by default (the checksum pass
   * reads every byte there, not on this thread). Resolves with the open index. See src/async/.
   */
  static openAsync(path: string, options: OpenOptions = {}): Promise<Index> {
    try {
      checkOpenOptions(options, "openAsync");
      if (options.indexes !== undefined) RecordSchema.fromIndexes(options.indexes);
    } catch (error) {
      return Promise.reject(error);
    }
    return async.openAsync(path, options, (handle) => new Index({ dimensions: 0, centre: options.centre, indexes: options.indexes }, handle, true));
  }

  /**
   * Attaches to an index opened elsewhere in this process (e.g. by the main thread, from a
   * Worker): pass `index.handle`. The attached wrapper holds no reference on the index: the
   * owner's close() (or its collection) closes it for every Worker at once, and its files are
   * released as soon as running calls and live views let go, whether Workers are attached,
   * idle or terminated. Its calls then throw ClosedError. The attached wrapper's close() only
   * revokes its own views and snapshots. InvalidHandleError for anything but an open index's
   * handle. Cost: two FFI calls.
   */
  static attach(handle: number): Index {
    // The native handle is a u32: a larger number would be truncated (Bun) onto another index.
    if (typeof handle !== "number" || !Number.isInteger(handle) || handle < 0 || handle > 0xffff_ffff) {
      throw new InvalidHandleError(`attach takes the numeric \`handle\` of an open index, not ${String(handle)}`);
    }
    return new Index({ dimensions: 0 }, handle, false);
  }

  /** The process-wide handle to pass to Workers (see `Index.attach`). */
  get handle(): number {
    return this.handleOrThrow();
  }

  handleOrThrow(): number {
    if (this.#handle === undefined) closedError("index");
    return this.#handle;
  }

  liveHandle(): number | undefined {
    return this.#handle;
  }

  protected snapshotHandle(): bigint {
    return 0n;
  }

  get dimensions(): number {
    return this.#dimensions;
  }

  /** The indexed fields (`indexes`), fixed at creation. */
  get schema(): RecordSchema {
    return this.#schema;
  }

  /** The `indexes` the index was created with (`{}` for none). O(fields). */
  get indexes(): Indexes {
    return this.#schema.toIndexes();
  }

  get closed(): boolean {
    return this.#handle === undefined;
  }

  /**
   * Adds one record, or replaces the record of an existing id (upsert: vector and metadata
   * together; no metadata given means none). `id` is a number or bigint (a u64 key) or a string
   * id (1 to 1024 bytes of UTF-8); `metadata` a JSON-like object (InvalidMetadataError, naming
   * the path, for anything else, over 65536 bytes of JSON, or an indexed field of the wrong
   * type). With a column of ids and one flat Float32Array of vectors, adds a batch on `threads`
   * native threads, with `metadata[i]` for record i; a batch is validated whole before anything
   * is written (an error found only while inserting, IdConflictError or DiskFullError, can leave
   * part of it in, each record whole), and an id given twice keeps its last vector. A string id whose key another id holds (or a numeric id over a string id's key)
   * is IdConflictError. Thread safety: safe beside every other call. Cost: O(efConstruction
   * log n) distance computations per vector, plus O(metadata bytes) to encode; numeric ids
   * without metadata take the same single FFI call as before records existed.
   */
  add(id: Id, vector: VectorLike, metadata?: MetadataInput): void;
  add(ids: BigUint64Array | ArrayLike<Id>, vectors: Float32Array, options?: AddOptions): void;
  add(idOrIds: Id | BigUint64Array | ArrayLike<Id>, vectors: VectorLike, third?: AddOptions | MetadataInput): void {
    const h = this.handleOrThrow();
    if (idOrIds instanceof BigUint64Array || Array.isArray(idOrIds)) {
      const options = (third ?? {}) as AddOptions;
      checkOptionKeys(options, addOptionKeys, "add");
      this.#addBatch(h, idOrIds as BigUint64Array | ArrayLike<Id>, vectors, options);
    } else {
      // Anything else is one id: keyOfId rejects what is not a number, a bigint or a string.
      const key = keyOfId(idOrIds);
      const v = toVector(vectors, this.#dimensions);
      if (typeof idOrIds !== "string" && third === undefined) {
        check(native().fn.qv_index_add(h, key, v, v.length));
      } else {
        const payload = encodePayload(typeof idOrIds === "string" ? idOrIds : undefined, third, this.#schema);
        check(native().fn.qv_index_add_record(h, key, v, v.length, payload, payload.length));
      }
    }
    this.revokeStaleViews();
  }

  #addBatch(h: number, ids: BigUint64Array | ArrayLike<Id>, batch: VectorLike, options: AddOptions): void {
    const vectors = plainTyped<Float32Array>(batch, Float32Array);
    if (vectors === undefined) throw new InvalidArgumentError("a batch takes one flat Float32Array");
    const threads = checkThreads(options.threads);
    const { keys, strings } = resolveIds(ids);
    const metadata = options.metadata;
    if (metadata !== undefined && (!Array.isArray(metadata) || metadata.length !== keys.length)) {
      throw new InvalidArgumentError(`metadata must be an array of one entry per id (${keys.length}), not ${Array.isArray(metadata) ? `${metadata.length} entries` : typeof metadata}`);
    }
    if (strings === undefined && metadata === undefined) {
      check(native().fn.qv_index_add_batch(h, keys, keys.length, vectors, vectors.length, threads));
      return;
    }
    const { bytes, offsets } = encodePayloads(strings ?? new Array(keys.length).fill(undefined), metadata, this.#schema);
    check(native().fn.qv_index_add_records(h, keys, keys.length, vectors, vectors.length, bytes, bytes.length, offsets, threads));
  }

  /**
   * Replaces the metadata of the record of `id` (the vector stays; the whole metadata object is
   * replaced, and its indexed values with it). Returns false when no live record has this id.
   * InvalidMetadataError as for `add`. Thread safety: safe beside every call; snapshots taken
   * before keep seeing the old metadata. Cost: one FFI call, O(metadata bytes); no graph work.
   */
  update(id: Id, options: UpdateOptions): boolean {
    const h = this.handleOrThrow();
    checkOptionKeys(options, new Set(["metadata"]), "update");
    if (!Object.hasOwn(options, "metadata")) throw new InvalidArgumentError("update takes { metadata }");
    const key = keyOfId(id);
    const payload = encodePayload(typeof id === "string" ? id : undefined, options.metadata, this.#schema);
    const status = native().fn.qv_index_update_record(h, key, payload, payload.length);
    if (status === Status.not_found) return false;
    check(status);
    return true;
  }

  /**
   * Soft-deletes the record of `id`; returns whether it was present (for a string id: whether a
   * live record had this very id). The node keeps routing searches. Thread safety: safe beside
   * every call. O(1).
   */
  remove(id: Id): boolean {
    const h = this.handleOrThrow();
    if (typeof id !== "string") {
      check(native().fn.qv_index_remove(h, toKey(id), this.u32Out));
      return this.u32Out[0] === 1;
    }
    const key = keyOfId(id);
    const bytes = idBytes(id);
    check(native().fn.qv_index_remove_record(h, key, bytes, bytes.length, this.u32Out));
    return this.u32Out[0] === 1;
  }

  /**
   * Soft-deletes every live record that passes `filter` (`{}` deletes all); returns how many.
   * InvalidFilterError for a bad filter (nothing is deleted). Thread safety: safe beside every
   * call; records added while it runs may or may not be deleted. Cost: one FFI call, O(matching
   * records + slots / 64), one log record per deletion.
   */
  deleteMany(filter: Filter): number {
    const h = this.handleOrThrow();
    if (filter === undefined) throw new InvalidArgumentError("deleteMany takes a filter ({} deletes every record)");
    const program = this.compileFilter(filter);
    check(native().fn.qv_index_remove_matching(h, program, program.length, this.u64Out));
    return Number(this.u64Out[0]);
  }

  /** Slots the storage holds before it must grow (and remap). */
  get capacity(): number {
    return this.stats().capacity;
  }

  /** Grows the storage to hold `slots` without further remaps. Cost: one remap at most. */
  reserve(slots: number): void {
    const h = this.handleOrThrow();
    if (!Number.isSafeInteger(slots) || slots < 0) throw new InvalidArgumentError(`slots = ${slots}`);
    check(native().fn.qv_index_reserve(h, slots));
    this.revokeStaleViews();
  }

  /** Maps the storage anew at its current size (epoch + 1): a real remap, for tests and tools. */
  remap(): void {
    check(native().fn.qv_index_remap(this.handleOrThrow()));
    this.revokeStaleViews();
  }

  /**
   * A zero-copy view of the stored vector of `id` (a u64 key or a string id), valid until
   * disposed or until the storage is remapped (then `array` throws StaleGuardError). Use with
   * `using`. NotFoundError when no live record has this id (for a string id: the one stored
   * under its key). A copy instead (see `VectorView.copy`) for a read-only index and in Deno
   * Workers. Cost: O(1), O(d) for a copy; a string id also reads its record's payload.
   */
  view(id: Id): VectorView {
    const h = this.handleOrThrow();
    if (typeof id === "string" && !this.has(id)) throw new NotFoundError(`no record has the id ${JSON.stringify(id.slice(0, 64))}`);
    const key = typeof id === "string" ? keyOfId(id) : toKey(id);
    let ref: WeakRef<VectorView> | undefined;
    const owner = {
      epochNow: () => this.#epochNow(),
      forget: () => {
        if (ref !== undefined) this.#views.delete(ref);
      },
    };
    const epoch = new BigUint64Array(1);
    let view: VectorView;
    if (!this.#writable || (!native().freesPin && inWorker)) {
      // Read-only memory; or a Deno Worker, whose pins nothing could release once it is
      // terminated (no deallocator, no finalizer runs then). The copy is made natively, in
      // one call that holds the index while it reads: an attached wrapper holds no reference,
      // and a Worker terminated right after the call has nothing to give back.
      const copied = new Float32Array(this.#dimensions);
      check(native().fn.qv_view_copy(h, key, copied, copied.length, epoch));
      view = new VectorView(owner, 0n, 0n, epoch[0], this.#dimensions, copied);
    } else {
      // One call pins the mapping and takes a registry user, so the owner's close cannot free
      // the index while the buffer can reach its memory.
      const pin = new BigUint64Array(1);
      const address = new BigUint64Array(1);
      check(native().fn.qv_pin_acquire(h, key, pin, address, epoch));
      try {
        view = new VectorView(owner, address[0], pin[0], epoch[0], this.#dimensions);
      } catch (error) {
        native().fn.qv_pin_release(pin[0]);
        throw error;
      }
    }
    ref = new WeakRef(view);
    this.#views.add(ref);
    return view;
  }

  /** The current mapping epoch; it moves on every remap. */
  get epoch(): bigint {
    this.handleOrThrow();
    return this.#epochNow();
  }

  /** A point-in-time read view (see Snapshot). O(1). */
  snapshot(): Snapshot {
    const h = this.handleOrThrow();
    check(native().fn.qv_snapshot_create(h, this.u64Out));
    const snapshot = new Snapshot(this, this.u64Out[0]);
    this.#snapshots.add(snapshot.ref);
    return snapshot;
  }

  /**
   * Writes a consistent copy of the index as of this call to `path` (a new persistent index),
   * while writers go on. Equivalent to `snapshot().save(path)`. O(n).
   */
  backup(path: string): void {
    if (typeof path !== "string" || path.length === 0) throw new InvalidArgumentError("path must be a non-empty string");
    const bytes = new TextEncoder().encode(path);
    check(native().fn.qv_snapshot_save(this.handleOrThrow(), 0n, bytes, bytes.length), path);
  }

  forgetSnapshot(snapshot: Snapshot): void {
    this.#snapshots.delete(snapshot.ref);
  }

  /**
   * storage "i8" and "rabitq": a copy of the centre the codes are taken around (zeros until the first add
   * trains it or one is given; `stats().centre_set` tells which). InvalidArgumentError for
   * other storages.
   */
  centre(): Float32Array {
    const out = new Float32Array(this.#dimensions);
    check(native().fn.qv_index_get_centre(this.handleOrThrow(), out, out.length));
    return out;
  }

  /** Counters and sizes, including the safety counters. O(1). */
  stats(): Stats {
    const out = new Uint8Array(layouts.Stats.size);
    check(native().fn.qv_index_stats(this.handleOrThrow(), out));
    return decodeStats(out);
  }

  /** The integrity walk (blocks writers while it runs; reads go on). O(n * M). */
  verify(): VerifyReport {
    const out = new Uint8Array(layouts.VerifyReport.size);
    check(native().fn.qv_index_verify(this.handleOrThrow(), out));
    return decodeReport(out);
  }

  /** Makes every acknowledged write durable against power loss (fsync of the log). */
  sync(): void {
    check(native().fn.qv_index_sync(this.handleOrThrow()));
  }

  /** Writes a consistent image into the mapped files and empties the log (blocks writers). */
  checkpoint(): void {
    check(native().fn.qv_index_checkpoint(this.handleOrThrow()));
  }

  /**
   * Reclaims the tombstones left by removes and upserts: rebuilds the graph from the live
   * vectors into fresh storage and swaps it in (a remap: views go stale). Takes the exclusive
   * path: every other call on the index, from any thread or Worker, waits until it is done.
   * Throws BusyError while views or snapshots are alive. Cost: a rebuild, O(n log n).
   */
  compact(options: { threads?: number } = {}): void {
    const h = this.handleOrThrow();
    checkOptionKeys(options, compactOptionKeys, "compact");
    check(native().fn.qv_index_compact(h, checkThreads(options.threads)));
    this.revokeStaleViews();
  }

  /**
   * Async forms (src/async/api.ts): the same calls run by a bounded pool of Workers attached to
   * this index, resolved on the event loop; they never block it. Long ones take `onProgress`
   * and `signal` (README, "Async"). Closing the index rejects pending ones with ClosedError
   * once their native work has ended. Cost: the sync call plus one message round trip.
   */
  addAsync(ids: BigUint64Array | ArrayLike<Id>, vectors: Float32Array, options?: async.AsyncAddOptions): Promise<number> {
    return async.addAsync(this, ids, vectors, options);
  }

  searchAsync(query: VectorLike, k: number, options?: SearchOptions): Promise<SearchResult> {
    return async.searchAsync(this, query, k, options);
  }

  searchBatchAsync(queries: Float32Array, k: number, options?: BatchOptions): Promise<BatchResult> {
    return async.searchBatchAsync(this, queries, k, options);
  }

  compactAsync(options?: async.AsyncCompactOptions): Promise<void> {
    return async.compactAsync(this, options);
  }

  backupAsync(path: string, options?: async.LongOptions): Promise<void> {
    return async.backupAsync(this, path, options);
  }

  verifyAsync(options?: async.LongOptions): Promise<VerifyReport> {
    return async.verifyAsync<VerifyReport>(this, options);
  }

  syncAsync(): Promise<void> {
    return async.syncAsync(this);
  }

  checkpointAsync(): Promise<void> {
    return async.checkpointAsync(this);
  }

  /** Revokes views made before the latest remap (called after calls that can remap). */
  revokeStaleViews(): void {
    if (this.#views.size === 0) return;
    const now = this.#epochNow();
    for (const ref of [...this.#views]) {
      const view = ref.deref();
      if (view === undefined) this.#views.delete(ref);
      else if (view.epoch !== now) view.revoke(true);
    }
  }

  /**
   * Closes the index: revokes its views and snapshots; the owner also closes it for every
   * Worker (their calls then throw ClosedError). Idempotent. Persistent indexes checkpoint.
   */
  close(): void {
    const h = this.#handle;
    if (h === undefined) return;
    for (const ref of [...this.#views]) ref.deref()?.revoke();
    for (const ref of [...this.#snapshots]) ref.deref()?.release();
    this.#views.clear();
    this.#snapshots.clear();
    this.#handle = undefined;
    this.#epoch = new BigUint64Array(1);
    // An attached wrapper holds no native reference: nothing to give back.
    if (!this.#owner) return;
    registry.unregister(this);
    native().fn.qv_index_close(h);
    const status = native().fn.qv_index_release(h);
    async.detachAsync(h);
    if (status !== Status.ok && status !== Status.closed) check(status);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

