/**
 * The messages between the main thread's pool (pool.ts) and its Workers (worker.ts). A task is
 * one call on one index; a Worker runs one task at a time and answers each with exactly one
 * `done` or `failed` (and, before it, any number of `progress`). Imports nothing.
 */

/** A typed array the Worker reads, sent with the message (a transferred copy, or shared). */
export type Column = { kind: "inline"; array: Float32Array | BigUint64Array | Uint8Array | Uint32Array };

export type TaskBody =
  | { op: "search"; query: Float32Array; k: number; options: Record<string, unknown>; snapshot?: undefined }
  | { op: "searchBatch"; queries: Column; k: number; options: Record<string, unknown> }
  | { op: "add"; keys: Column; vectors: Column; threads: number; chunk: number; payloads?: Column; offsets?: Column }
  | { op: "compact"; threads: number }
  | { op: "backup"; path: string }
  | { op: "verify" }
  | { op: "sync" }
  | { op: "checkpoint" }
  | { op: "open"; path: string; options: Record<string, unknown> };

/**
 * Main to Worker. `cancel` is a shared word the main thread sets to 1 on abort; `progress` is
 * shared [done, total] that native code writes (compaction) and the main thread polls.
 */
export type Request =
  | { type: "task"; id: number; handle: number; body: TaskBody; cancel?: Int32Array; progress?: BigUint64Array }
  | { type: "searches"; handle: number; items: Array<{ id: number; body: TaskBody }> }
  | { type: "detach"; handle: number }
  | { type: "nice"; value: number }
  | { type: "shutdown" };

/** Worker to main. */
export type Reply =
  | { type: "ready" }
  | { type: "niced"; ok: boolean }
  | { type: "progress"; id: number; done: number; total: number }
  | { type: "done"; id: number; result: unknown; aborted?: boolean; done?: number }
  | { type: "failed"; id: number; status?: number; name: string; message: string; handleClosed: boolean; path?: string }
  | { type: "detached"; handle: number; references: number }
  | { type: "batch"; replies: Array<Extract<Reply, { type: "done" | "failed" }>> };
