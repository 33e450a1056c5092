/**
 * Quiver: an embedded HNSW vector index for Bun and Deno with a Zig core.
 *
 * ```ts
 * import { Index } from "quiverdb";
 * using index = new Index({ dimensions: 3 });
 * index.add(1, new Float32Array([1, 0, 0]));
 * index.search(new Float32Array([1, 0, 0]), 1); // { keys: [1n], distances: [0] }
 * ```
 *
 * Importing this module loads the native library (src/runtime/loader.ts says where it looks).
 *
 * @module
 */
import { loadNative } from "./src/runtime/loader.ts";

await loadNative();

export { Index } from "./src/index.ts";
export type { AddOptions, IndexOptions, Metric, OpenOptions, Stats, Storage, UpdateOptions, VerifyReport } from "./src/index.ts";
export { Snapshot } from "./src/snapshot.ts";
export { asyncIdle, asyncStart, asyncStats, configureAsync } from "./src/async/api.ts";
export type { AbortSignalLike, AsyncAddOptions, AsyncCompactOptions, AsyncStatsFull, LongOptions, Progress } from "./src/async/api.ts";
export { VectorView } from "./src/view.ts";
export type { BatchOptions, BatchResult, SearchOptions, SearchResult, StoredRecord, VectorLike } from "./src/reader.ts";
export type { Key } from "./src/keys.ts";
export type { Id } from "./src/ids.ts";
export type { FieldCondition, FieldKind, FieldOperators, Filter, Indexes, Metadata, MetadataInput, MetadataValue, RecordSchema } from "./src/records/mod.ts";
export { kernels } from "./src/kernels.ts";
export type { KernelInfo, Kernels } from "./src/kernels.ts";
export * from "./src/errors.ts";
