/**
 * The async API: every call that can take more than about a millisecond, run by the Worker
 * pool (pool.ts) as the ordinary synchronous call on an attached wrapper, resolved on this
 * thread's event loop. `Index` delegates its `…Async` methods here. Imports ./pool.ts,
 * ./protocol.ts, ../errors.ts, ../ids.ts, ../reader.ts, ../records/mod.ts and
 * ../runtime/loader.ts;
 * not ../index.ts (which imports this file): an index is seen through `AsyncTarget`.
 */
import { ClosedError, InvalidArgumentError } from "../errors.ts";
import { plainTyped } from "../arrays.ts";
import { type Id, resolveIds } from "../ids.ts";
import { checkEf, checkK, checkQueries, checkOptionKeys, checkSearchOptions, checkThreads, toVector, type BatchOptions, type BatchResult, type SearchOptions, type SearchResult, type VectorLike } from "../reader.ts";
import { encodePayloads, type MetadataInput, parseFilter, type RecordSchema } from "../records/mod.ts";
import { native } from "../runtime/loader.ts";
import { type AsyncStats, pool, rebuild } from "./pool.ts";
import type { Column, Reply, TaskBody } from "./protocol.ts";

/** `onProgress` argument: `done` of `total` units are finished (vectors for a batch add). */
export interface Progress {
  done: number;
  total: number;
}

/** What the async calls need of an `Index`. */
export interface AsyncTarget {
  handleOrThrow(): number;
  readonly closed: boolean;
  readonly dimensions: number;
  /** The indexed fields (filters are validated against them before they are posted). */
  readonly schema: RecordSchema;
  revokeStaleViews(): void;
}
type Index = AsyncTarget;

/**
 * What the async calls use of an `AbortSignal` (a real one fits): written out so the published
 * types need no DOM library (JSR's check of the public API has none).
 */
export interface AbortSignalLike {
  readonly aborted: boolean;
  readonly reason?: unknown;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/** Options of every long async call. */
export interface LongOptions {
  /**
   * Called with done = 0 at the start (compaction: once its total is known), at most every
   * 250 ms while the call runs, and once at its end with the final count.
   */
  onProgress?: (progress: Progress) => void;
  /** Aborts the call; its Promise rejects with `signal.reason` (see the README for what stays). */
  signal?: AbortSignalLike;
}

export interface AsyncAddOptions extends LongOptions {
  /** Native threads of each chunk (default 1). */
  threads?: number;
  /**
   * The metadata of each record (as many as ids), encoded and validated whole on this thread
   * before anything is posted (O(metadata bytes) here; InvalidMetadataError names the record).
   */
  metadata?: readonly (MetadataInput | undefined)[];
  /** Vectors per chunk: the grain of progress and cancellation (default: total / 100, 256 to 16384). */
  chunk?: number;
}

export interface AsyncCompactOptions extends LongOptions {
  threads?: number;
}

const addOptionKeys = new Set(["threads", "chunk", "metadata", "onProgress", "signal"]);
const configureKeys = new Set(["workers", "nice", "idleMs"]);
const longKeys = new Set(["onProgress", "signal"]);
const compactKeys = new Set(["threads", "onProgress", "signal"]);

const progressIntervalMs = 250;

/** `asyncStats()` plus the native registry's counts (indexes open, references held). */
export interface AsyncStatsFull extends AsyncStats {
  /** Indexes open in the process (every wrapper and Worker counted once per index). */
  nativeIndexes: number;
  /** References held on them (wrappers, Workers' attachments, running calls). */
  nativeReferences: number;
}

/** The pool's bound, queue and counters, and the native registry's counts. O(Workers). */
export function asyncStats(): AsyncStatsFull {
  const open = new Uint32Array(1);
  const users = new BigUint64Array(1);
  native().fn.qv_registry_counts(open, users);
  return { ...pool.stats(), nativeIndexes: open[0], nativeReferences: Number(users[0]) };
}

/**
 * Sets how many Workers run async calls (default: the core count), Deno's `idleMs` (an idle
 * Worker exits after it, so that a finished program can exit; default 1000, Infinity keeps
 * them) and, on Linux, the nice
 * value of Workers started afterwards and of the native threads their calls use (default 0;
 * a higher value lets the event loop's thread run first when every core is busy: its effect
 * could not be told from other users' load on the 2-core machine it was measured on, see
 * BENCHMARKS.md). Every async call of the
 * process shares them; calls beyond the bound wait in a queue (`asyncStats().queued`).
 */
export function configureAsync(options: { workers?: number; nice?: number; idleMs?: number }): void {
  checkOptionKeys(options, configureKeys, "configureAsync");
  pool.configure(options.workers ?? pool.stats().workers, options.nice, options.idleMs);
}

/**
 * Starts every Worker of the pool now (otherwise each starts at the first call that needs it);
 * resolves once all are ready. Starting a Worker stalls the event loop once (~20-35 ms under
 * Deno, a few ms under Bun): a server calls this before it serves.
 */
export function asyncStart(): Promise<void> {
  return pool.start();
}

/** Resolves once every Worker has finished its tasks and handled every detach (tests). */
export function asyncIdle(): Promise<void> {
  return pool.drain();
}

/**
 * The Worker-side column for a typed array: shared when it is over a SharedArrayBuffer (which
 * nothing can detach or free while the message holds it), else copied at the call and the copy
 * transferred. Inputs over 1 MiB used to be pinned and read by address, saving the copy (about
 * 50 ms per 100 MB, measured) but reading freed memory when the caller transferred or resized
 * the buffer before the call settled: the caller may now reuse or transfer it at once.
 */
function toColumn(array: Float32Array | BigUint64Array | Uint8Array | Uint32Array, transfer: ArrayBuffer[]): Column {
  if (array.buffer instanceof SharedArrayBuffer) return { kind: "inline", array };
  const copy = copyOf(array);
  transfer.push(copy.buffer as ArrayBuffer);
  return { kind: "inline", array: copy };
}

/**
 * A fresh copy in an ArrayBuffer of its own. Not `slice()`, which makes what the array's
 * `constructor[Symbol.species]` says: a caller's species once returned a SharedArrayBuffer's
 * view (which a transfer list refuses) or a view of the caller's own buffer (then transferred,
 * detaching it under the caller).
 */
function copyOf<T extends Float32Array | BigUint64Array | Uint8Array | Uint32Array>(array: T): T {
  const type = array instanceof Float32Array ? Float32Array : array instanceof BigUint64Array ? BigUint64Array : array instanceof Uint8Array ? Uint8Array : Uint32Array;
  const copy = new type(array.length);
  // %TypedArray%.prototype.set reads the source through its internal slots.
  (copy as Float32Array).set(array as unknown as Float32Array);
  return copy as T;
}

interface Call<T> {
  index: Index;
  body: TaskBody;
  transfer?: ArrayBuffer[];
  options?: LongOptions;
  total?: number;
  /** Progress comes from native code through shared [done, total], polled here. */
  polled?: boolean;
  /** Read-only work: an abort rejects at once; the Worker's result is dropped when it ends. */
  abortEarly?: boolean;
  map(result: unknown): T;
}

/**
 * Runs one task on the pool; the Promise settles on this thread after the Worker's call ends.
 * Never throws: a closed index or a bad option is a rejected Promise.
 */
function submit<T>(call: Call<T>): Promise<T> {
  try {
    return submitOrThrow(call);
  } catch (error) {
    return Promise.reject(error);
  }
}

function submitOrThrow<T>(call: Call<T>): Promise<T> {
  const { index, options = {} } = call;
  const handle = index.handleOrThrow();
  const signal = options.signal;
  const onProgress = options.onProgress;
  checkCallbacks(signal, onProgress);
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    let last = 0;
    let reported = -1;
    let total = call.total ?? 1;
    // What a caller's callback threw: it runs inside the pool's message handlers, where an
    // exception would escape uncaught (ending the process) and leave the pool's queue stuck.
    // The call still runs to its end; the Promise then rejects with the first such error.
    let thrown: { error: unknown } | undefined;
    const guarded = (callback: () => void) => {
      try {
        callback();
      } catch (error) {
        thrown ??= { error };
      }
    };
    const report = (done: number, force: boolean) => {
      if (!onProgress || done === reported || thrown !== undefined) return;
      const now = performance.now();
      if (!force && now - last < progressIntervalMs) return;
      last = now;
      reported = done;
      guarded(() => onProgress({ done, total }));
    };
    const cancel = signal ? new Int32Array(new SharedArrayBuffer(4)) : undefined;
    const progress = call.polled && (signal || options.onProgress) ? new BigUint64Array(new SharedArrayBuffer(16)) : undefined;
    const poll = progress && options.onProgress
      ? setInterval(() => {
        const t = Number(Atomics.load(progress, 1));
        if (t > 0) {
          total = t;
          report(Number(Atomics.load(progress, 0)), false);
        }
      }, progressIntervalMs)
      : undefined;
    const finish = () => {
      settled = true;
      if (poll !== undefined) clearInterval(poll);
      if (signal !== undefined) guarded(() => signal.removeEventListener("abort", onAbort));
    };
    let id = 0;
    const onAbort = () => {
      // Not started: it never will. Running: the Worker stops at its next chunk boundary.
      if (pool.unqueue(id)) {
        finish();
        reject(signal!.reason);
        return;
      }
      Atomics.store(cancel!, 0, 1);
      if (call.abortEarly) {
        finish();
        reject(signal!.reason);
      }
    };
    const settle = (reply: Extract<Reply, { type: "done" | "failed" }>) => {
      if (settled) return;
      finish();
      if (progress !== undefined && Number(progress[1]) > 0) {
        total = Number(progress[1]);
        report(Number(progress[0]), true);
      } else if (reply.type === "done" && reply.done !== undefined) report(reply.done, true);
      else if (reply.type === "done" && !reply.aborted) report(total, true);
      if (index.closed) return reject(new ClosedError("the index was closed while this call ran"));
      if (reply.type === "failed") return reject(rebuild(reply));
      if (thrown !== undefined) return reject(thrown.error);
      if (reply.aborted) return reject(signal?.reason ?? new DOMException("aborted", "AbortError"));
      try {
        resolve(call.map(reply.result));
      } catch (error) {
        reject(error);
      }
    };
    // Before the task exists: a listener that cannot be added leaves nothing running.
    signal?.addEventListener("abort", onAbort, { once: true });
    id = pool.submit(handle, call.body, { settle, progress: (done) => report(done, false) }, call.transfer, cancel, progress);
    // A polled call learns its total from native code: its first report waits for it.
    if (!call.polled) report(0, true);
  });
}

/**
 * InvalidArgumentError unless `signal` is undefined or has an AbortSignal's `aborted`,
 * `addEventListener` and `removeEventListener`, and `onProgress` is undefined or a function:
 * checked before anything is posted (a `{}` signal once failed only after the task ran, inside
 * the pool's reply handler).
 */
function checkCallbacks(signal: unknown, onProgress: unknown): void {
  if (onProgress !== undefined && typeof onProgress !== "function") {
    throw new InvalidArgumentError(`onProgress must be a function, not ${typeof onProgress}`);
  }
  if (signal === undefined) return;
  const s = signal as Partial<AbortSignalLike> | null;
  if (s === null || typeof s !== "object" || typeof s.aborted !== "boolean" || typeof s.addEventListener !== "function" || typeof s.removeEventListener !== "function") {
    throw new InvalidArgumentError("signal must be an AbortSignal (aborted, addEventListener, removeEventListener)");
  }
}

/**
 * A structured clone of what a call posts to a Worker, made here: a value that cannot be
 * posted (a function, a symbol, a Proxy) is InvalidArgumentError at the call, where it was once
 * a DataCloneError thrown from the pool's message handler (uncaught: Deno exited, Bun hung).
 * Validating the clone, and posting it, also means a getter cannot change a value in between.
 * O(size of the options).
 */
function postable<T>(value: T, what: string): T {
  try {
    return structuredClone(value);
  } catch (error) {
    throw new InvalidArgumentError(`${what} cannot be posted to a Worker (functions, symbols and Proxies cannot): ${(error as Error)?.message}`);
  }
}

const same = <T>(result: unknown) => result as T;

/** `search` on a Worker; the query is copied at the call. */
export function searchAsync(index: Index, query: VectorLike, k: number, options: SearchOptions = {}): Promise<SearchResult> {
  try {
    checkSearchOptions(options);
    const q = copyOf(toVector(query, index.dimensions));
    checkK(k);
    checkEf(options.ef, k);
    const picked = postable({ ef: options.ef, rerank: options.rerank, filter: options.filter, includeMetadata: options.includeMetadata }, "search options");
    if (picked.filter !== undefined) parseFilter(picked.filter, index.schema);
    return submit({ index, body: { op: "search", query: q, k, options: picked }, transfer: [q.buffer as ArrayBuffer], map: same<SearchResult> });
  } catch (error) {
    return Promise.reject(error);
  }
}

/** `searchBatch` on a Worker; the queries are copied (see toColumn). */
export function searchBatchAsync(index: Index, batch: Float32Array, k: number, options: BatchOptions = {}): Promise<BatchResult> {
  try {
    checkSearchOptions(options, true);
    checkK(k);
    checkEf(options.ef, k);
    checkThreads(options.threads);
    const queries = checkQueries(batch, index.dimensions, k);
    const transfer: ArrayBuffer[] = [];
    const column = toColumn(queries, transfer);
    const picked = postable({ ef: options.ef, rerank: options.rerank, threads: options.threads, filter: options.filter, includeMetadata: options.includeMetadata }, "searchBatch options");
    if (picked.filter !== undefined) parseFilter(picked.filter, index.schema);
    return submit({ index, body: { op: "searchBatch", queries: column, k, options: picked }, transfer, map: same<BatchResult> });
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * A batch add in chunks. Resolves with the number of vectors added; on abort, rejects with the
 * signal's reason after the chunk that runs ends: the first `done` vectors of the batch (the
 * last `onProgress` value, always reported before the rejection) are in, the rest are not.
 */
export function addAsync(index: Index, ids: BigUint64Array | ArrayLike<Id>, batch: Float32Array, options: AsyncAddOptions = {}): Promise<number> {
  try {
    checkOptionKeys(options, addOptionKeys, "addAsync");
    const { keys: column, strings } = resolveIds(ids);
    const vectors = plainTyped<Float32Array>(batch, Float32Array);
    if (vectors === undefined) throw new InvalidArgumentError("a batch takes one flat Float32Array");
    const threads = checkThreads(options.threads);
    const total = column.length;
    const metadata = options.metadata;
    if (metadata !== undefined && (!Array.isArray(metadata) || metadata.length !== total)) {
      throw new InvalidArgumentError(`metadata must be an array of one entry per id (${total})`);
    }
    const payloads = strings === undefined && metadata === undefined ? undefined : encodePayloads(strings ?? new Array(total).fill(undefined), metadata, index.schema);
    const chunk = options.chunk ?? Math.min(16384, Math.max(256, Math.ceil(total / 100)));
    if (!Number.isInteger(chunk) || chunk < 1) throw new InvalidArgumentError(`chunk = ${String(chunk)}`);
    const transfer: ArrayBuffer[] = [];
    const body: Extract<TaskBody, { op: "add" }> = {
      op: "add",
      // toKeyColumn may return the caller's own array: it is copied like the vectors.
      keys: total === 0 ? { kind: "inline", array: new BigUint64Array(0) } : toColumn(column, transfer),
      vectors: vectors.length === 0 ? { kind: "inline", array: new Float32Array(0) } : toColumn(vectors, transfer),
      threads,
      chunk,
    };
    if (payloads !== undefined) {
      body.payloads = toColumn(payloads.bytes, transfer);
      body.offsets = toColumn(payloads.offsets, transfer);
    }
    return submit({
      index,
      body,
      transfer,
      options,
      total,
      map: (result) => {
        index.revokeStaleViews();
        return result as number;
      },
    });
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * `compact` on a Worker. Progress counts the live vectors rebuilt (read from native code). An
 * abort stops the rebuild at its next chunk of 4096 vectors, before the swap: the Promise
 * rejects and the index is the old one, tombstones included (a persistent index's temporary
 * `path~compact*` files are removed). An abort that lands after the swap is too late: the
 * Promise then resolves, compacted.
 */
export function compactAsync(index: Index, options: AsyncCompactOptions = {}): Promise<void> {
  try {
    checkOptionKeys(options, compactKeys, "compactAsync");
    const threads = checkThreads(options.threads);
    return submit({
      index,
      body: { op: "compact", threads },
      options,
      polled: true,
      map: () => {
        index.revokeStaleViews();
      },
    });
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * `backup` on a Worker. Progress is 0 then 1 (one native call). An abort lets the copy finish,
 * then removes the files it wrote at `path` and rejects: a backup is whole or absent.
 */
export function backupAsync(index: Index, path: string, options: LongOptions = {}): Promise<void> {
  if (typeof path !== "string" || path.length === 0) return Promise.reject(new InvalidArgumentError("path must be a non-empty string"));
  try {
    checkOptionKeys(options, longKeys, "backupAsync");
  } catch (error) {
    return Promise.reject(error);
  }
  return submit({ index, body: { op: "backup", path }, options, map: () => undefined });
}

/**
 * `verify` on a Worker. Progress is 0 then 1. An abort rejects at once; the walk (read-only)
 * runs to its end on the Worker, which takes no other task until then.
 */
export function verifyAsync<Report>(index: Index, options: LongOptions = {}): Promise<Report> {
  try {
    checkOptionKeys(options, longKeys, "verifyAsync");
  } catch (error) {
    return Promise.reject(error);
  }
  return submit({ index, body: { op: "verify" }, options, abortEarly: true, map: same<Report> });
}

/** `sync` (fsync of the log) on a Worker. */
export function syncAsync(index: Index): Promise<void> {
  return submit({ index, body: { op: "sync" }, map: () => undefined });
}

/** `checkpoint` on a Worker. */
export function checkpointAsync(index: Index): Promise<void> {
  return submit({ index, body: { op: "checkpoint" }, map: () => undefined });
}

/**
 * Opens on a Worker (with `validate: "full"` unless told "fast": the checksum pass over every
 * byte runs there) and hands the open index to `wrap` on this thread.
 */
export function openAsync<T>(path: string, options: { centre?: unknown }, wrap: (handle: number) => T): Promise<T> {
  if (typeof path !== "string" || path.length === 0) return Promise.reject(new InvalidArgumentError("path must be a non-empty string"));
  if (options === null || typeof options !== "object") return Promise.reject(new InvalidArgumentError("openAsync options must be an object"));
  const { centre: _centre, ...others } = options;
  let rest: Record<string, unknown>;
  try {
    rest = postable(others, "openAsync options");
  } catch (error) {
    return Promise.reject(error);
  }
  return new Promise<T>((resolve, reject) => {
    pool.submit(0, { op: "open", path, options: rest }, {
      settle: (reply) => {
        if (reply.type === "failed") return reject(rebuild(reply));
        try {
          resolve(wrap(reply.result as number));
        } catch (error) {
          reject(error);
        }
      },
    });
  });
}

/** Called by `Index.close()`: the pool's Workers drop their references to `handle`. */
export function detachAsync(handle: number): void {
  pool.detach(handle);
}
