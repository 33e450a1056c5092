/**
 * The Worker of the async API (pool.ts starts a fixed number of them). Each one attaches to
 * the indexes the main thread names (`Index.attach(handle)`, one wrapper per index, kept until
 * the main thread says the index closed) and runs one task at a time as ordinary synchronous
 * calls, which block this Worker, never the main thread. Imports node:fs, ../runtime/loader.ts,
 * ../index.ts, ../errors.ts, ../ffi.gen.ts, ./nice.ts and ./protocol.ts.
 */
import { rmSync } from "node:fs";
import { loadNative, native } from "../runtime/loader.ts";
import { encodeOptions, Index, openFlags } from "../index.ts";
import { check, ClosedError, InvalidFilterError, InvalidHandleError, InvalidMetadataError, QuiverError } from "../errors.ts";
import type { Column, Reply, Request, TaskBody } from "./protocol.ts";
import { niceThisThread } from "./nice.ts";
import { fileFormat } from "../ffi.gen.ts";

await loadNative();

// deno-lint-ignore no-explicit-any
const scope = globalThis as any;
const attached = new Map<number, Index>();

function post(reply: Reply, transfer: ArrayBuffer[] = []): void {
  scope.postMessage(reply, transfer);
}

function indexFor(handle: number): Index {
  let index = attached.get(handle);
  if (index === undefined || index.closed) {
    index = Index.attach(handle);
    attached.set(handle, index);
  }
  return index;
}

function detach(handle: number): void {
  attached.get(handle)?.close();
  attached.delete(handle);
}

/** The array a column names: the message's copy (or a view of shared memory). */
function column(c: Column): Float32Array | BigUint64Array | Uint8Array | Uint32Array {
  return c.array;
}

/**
 * A batch in chunks: the whole batch is validated first (and trains the i8 centre, and
 * reserves its slots), so the chunks write the records one call would (each chunk inserted in
 * its own level order, so the graph may differ from one call's); the cancel word is read
 * between chunks, so an abort stops after a whole chunk and `done` vectors are in.
 */
function add(index: Index, id: number, body: Extract<TaskBody, { op: "add" }>, cancel?: Int32Array): Reply {
  const keys = column(body.keys) as BigUint64Array;
  const vectors = column(body.vectors) as Float32Array;
  const d = index.dimensions;
  const total = keys.length;
  check(native().fn.qv_index_prepare_batch(index.handle, total, vectors, vectors.length));
  // Records: the payload column (encoded and validated whole on the main thread), sliced per chunk.
  const payloads = body.payloads === undefined ? undefined : column(body.payloads) as Uint8Array;
  const offsets = body.offsets === undefined ? undefined : column(body.offsets) as Uint32Array;
  let done = 0;
  while (done < total) {
    if (cancel !== undefined && Atomics.load(cancel, 0) !== 0) return { type: "done", id, result: done, aborted: true, done };
    const n = Math.min(body.chunk, total - done);
    const chunkKeys = keys.subarray(done, done + n);
    const chunkVectors = vectors.subarray(done * d, (done + n) * d);
    if (payloads === undefined || offsets === undefined) {
      index.add(chunkKeys, chunkVectors, { threads: body.threads });
    } else {
      const base = offsets[done];
      const chunkOffsets = offsets.slice(done, done + n + 1).map((o) => o - base);
      const chunkPayloads = payloads.subarray(base, offsets[done + n]);
      check(native().fn.qv_index_add_records(index.handle, chunkKeys, n, chunkVectors, chunkVectors.length, chunkPayloads, chunkPayloads.length, chunkOffsets, body.threads));
      index.revokeStaleViews();
    }
    done += n;
    post({ type: "progress", id, done, total });
  }
  return { type: "done", id, result: done, done };
}

function open(body: Extract<TaskBody, { op: "open" }>): number {
  const options = body.options as Parameters<typeof openFlags>[0];
  const bytes = new TextEncoder().encode(body.path);
  const out = new Uint32Array(1);
  const validation = options.validate === "fast" ? 0 : 1;
  check(native().fn.qv_index_open(bytes, bytes.length, encodeOptions(options, openFlags(options)), validation, out), body.path);
  // The reference the open made is handed to the main thread's wrapper.
  return out[0];
}

/** A compaction that native code stops before its swap once `cancel` is set (the old index stays). */
function compact(index: Index, id: number, threads: number, cancel?: Int32Array, progress?: BigUint64Array): Reply {
  if (cancel === undefined && progress === undefined) {
    index.compact({ threads });
    return { type: "done", id, result: undefined };
  }
  const cancelled = new Uint32Array(1);
  const word = cancel ?? new Int32Array(1);
  const counts = progress ?? new BigUint64Array(2);
  check(native().fn.qv_index_compact_controlled(index.handle, threads, word, counts, cancelled));
  index.revokeStaleViews();
  return cancelled[0] === 1 ? { type: "done", id, result: undefined, aborted: true } : { type: "done", id, result: undefined };
}

/** A backup; aborted while it ran, its files are removed once it ends (it is never half-kept). */
function backup(index: Index, id: number, path: string, cancel?: Int32Array): Reply {
  index.backup(path);
  if (cancel === undefined || Atomics.load(cancel, 0) === 0) return { type: "done", id, result: undefined };
  // The mapped files, the log and the records file (native/storage/swap.zig `side_suffixes`,
  // which the generated table does not carry yet).
  for (const suffix of [...fileFormat.suffixes, fileFormat.walSuffix, ".records"]) rmSync(path + suffix, { force: true });
  return { type: "done", id, result: undefined, aborted: true };
}

function run(id: number, handle: number, body: TaskBody, cancel?: Int32Array, progress?: BigUint64Array): [Reply, ArrayBuffer[]] {
  if (body.op === "open") return [{ type: "done", id, result: open(body) }, []];
  const index = indexFor(handle);
  switch (body.op) {
    case "search": {
      const r = index.search(body.query, body.k, body.options);
      return [{ type: "done", id, result: r }, []];
    }
    case "searchBatch": {
      const r = index.searchBatch(column(body.queries) as Float32Array, body.k, body.options);
      return [{ type: "done", id, result: r }, [r.keys.buffer as ArrayBuffer, r.distances.buffer as ArrayBuffer, r.counts.buffer as ArrayBuffer]];
    }
    case "add":
      return [add(index, id, body, cancel), []];
    case "compact":
      return [compact(index, id, body.threads, cancel, progress), []];
    case "backup":
      return [backup(index, id, body.path, cancel), []];
    case "verify":
      return [{ type: "done", id, result: index.verify() }, []];
    case "sync":
      index.sync();
      return [{ type: "done", id, result: undefined }, []];
    case "checkpoint":
      index.checkpoint();
      return [{ type: "done", id, result: undefined }, []];
  }
}

function failure(id: number, handle: number, error: unknown): Reply {
  // A closed index: drop this Worker's reference now, not at the next task.
  const handleClosed = error instanceof ClosedError || error instanceof InvalidHandleError;
  if (handleClosed) detach(handle);
  const e = error as Error;
  return {
    type: "failed",
    id,
    status: error instanceof QuiverError ? error.status : undefined,
    path: error instanceof InvalidFilterError || error instanceof InvalidMetadataError ? error.path : undefined,
    name: e?.name ?? "Error",
    message: e?.message ?? String(error),
    handleClosed,
  };
}

scope.onmessage = (event: MessageEvent) => {
  const request = event.data as Request;
  if (request.type === "nice") {
    post({ type: "niced", ok: niceThisThread(request.value) });
    return;
  }
  if (request.type === "detach") {
    detach(request.handle);
    const counts = new Uint32Array(1);
    const users = new BigUint64Array(1);
    native().fn.qv_registry_counts(counts, users);
    post({ type: "detached", handle: request.handle, references: Number(users[0]) });
    return;
  }
  if (request.type === "shutdown") {
    for (const handle of [...attached.keys()]) detach(handle);
    post({ type: "detached", handle: -1, references: 0 });
    return;
  }
  if (request.type === "searches") {
    // Coalesced searches of one index: one message each way, each answered on its own.
    const replies: Array<Extract<Reply, { type: "done" | "failed" }>> = [];
    for (const item of request.items) {
      try {
        replies.push(run(item.id, request.handle, item.body)[0] as Extract<Reply, { type: "done" }>);
      } catch (error) {
        replies.push(failure(item.id, request.handle, error) as Extract<Reply, { type: "failed" }>);
      }
    }
    post({ type: "batch", replies });
    return;
  }
  const { id, handle, body, cancel, progress } = request;
  try {
    const [reply, transfer] = run(id, handle, body, cancel, progress);
    post(reply, transfer);
  } catch (error) {
    post(failure(id, handle, error));
  }
};

post({ type: "ready" });
