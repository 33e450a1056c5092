/**
 * A point-in-time read view of an index. Whatever inserts, removes, upserts, metadata updates
 * and remaps happen after it was taken, its size, keys, ids, get, getRecord, count and search
 * (filtered or not) see exactly the state of that moment, until it is released. Costs nothing
 * to take: O(1), no copy.
 */
import { native } from "./runtime/loader.ts";
import { check, InvalidArgumentError } from "./errors.ts";
import { Status } from "./ffi.gen.ts";
import { closedError, Reader } from "./reader.ts";
import type { RecordSchema } from "./records/mod.ts";

export interface SnapshotOwner {
  handleOrThrow(): number;
  /** The native handle while the index is open, else undefined. */
  liveHandle(): number | undefined;
  readonly dimensions: number;
  /** The index's indexed fields (fixed at creation). */
  readonly schema: RecordSchema;
  forgetSnapshot(snapshot: Snapshot): void;
}

/** A snapshot dropped without release(): give back its native snapshot (a leak backstop). */
const collector = new FinalizationRegistry<{ index: number; snapshot: bigint }>((held) => {
  // The index may be closed or gone by now: then it freed its snapshots itself.
  native().fn.qv_snapshot_release(held.index, held.snapshot);
});

export class Snapshot extends Reader {
  #owner: SnapshotOwner | undefined;
  readonly #handle: bigint;
  /** @internal How the owner holds this snapshot (weakly, so that a dropped one is collected). */
  readonly ref: WeakRef<Snapshot> = new WeakRef(this);

  constructor(owner: SnapshotOwner, handle: bigint) {
    super();
    this.#owner = owner;
    this.#handle = handle;
    collector.register(this, { index: owner.handleOrThrow(), snapshot: handle }, this);
  }

  protected handleOrThrow(): number {
    if (this.#owner === undefined) closedError("snapshot");
    return this.#owner.handleOrThrow();
  }

  protected snapshotHandle(): bigint {
    return this.#handle;
  }

  get dimensions(): number {
    if (this.#owner === undefined) closedError("snapshot");
    return this.#owner.dimensions;
  }

  get schema(): RecordSchema {
    if (this.#owner === undefined) closedError("snapshot");
    return this.#owner.schema;
  }

  /**
   * Writes this snapshot as a new persistent index at `path` (which must not exist) while
   * writers go on; `Index.open(path)` then gives exactly the snapshot's contents. O(n).
   */
  save(path: string): void {
    // A number or an object would be encoded as its string form: a file named "123".
    if (typeof path !== "string" || path.length === 0) throw new InvalidArgumentError("path must be a non-empty string");
    const h = this.handleOrThrow();
    const bytes = new TextEncoder().encode(path);
    check(native().fn.qv_snapshot_save(h, this.#handle, bytes, bytes.length), path);
  }

  /** Releases the snapshot. Idempotent; closing the index releases it too. */
  release(): void {
    const owner = this.#owner;
    if (owner === undefined) return;
    this.#owner = undefined;
    collector.unregister(this);
    owner.forgetSnapshot(this);
    // A closed index (closed here, or by its owner in another Worker) frees its snapshots itself.
    const handle = owner.liveHandle();
    if (handle === undefined) return;
    const status = native().fn.qv_snapshot_release(handle, this.#handle);
    if (status !== Status.closed) check(status);
  }

  [Symbol.dispose](): void {
    this.release();
  }
}
