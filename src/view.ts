/**
 * Zero-copy views of stored vectors, tied to the mapping epoch they were made in.
 *
 * A view pins the native mapping it points into (a guard), so its memory stays mapped however
 * the storage grows. When the storage is remapped the view goes stale: `array` throws
 * StaleGuardError, and the wrapper detaches the view's ArrayBuffer (`transfer(0)`) so a kept
 * Float32Array reads `undefined`, never freed memory. Disposing or closing revokes it the same way.
 */
import { native } from "./runtime/loader.ts";
import { ClosedError, StaleGuardError } from "./errors.ts";

export interface ViewOwner {
  /** The current mapping epoch (a cheap read of native memory). */
  epochNow(): bigint;
  releaseGuard(guard: bigint): void;
  forget(view: VectorView): void;
}

export class VectorView {
  #owner: ViewOwner | undefined;
  #stale = false;
  #buffer: ArrayBuffer;
  #array: Float32Array;
  readonly guard: bigint;
  /** The mapping epoch this view was made in. */
  readonly epoch: bigint;

  constructor(owner: ViewOwner, guard: bigint, address: bigint, epoch: bigint, dimensions: number) {
    this.#owner = owner;
    this.guard = guard;
    this.epoch = epoch;
    this.#buffer = native().view(address, dimensions * 4);
    this.#array = new Float32Array(this.#buffer);
  }

  /**
   * The stored vector, without a copy. Throws StaleGuardError once the storage was remapped and
   * ClosedError once the view was disposed. Cost: O(1).
   */
  get array(): Float32Array {
    const owner = this.#owner;
    if (owner !== undefined && owner.epochNow() !== this.epoch) this.revoke(true);
    if (this.#stale) throw new StaleGuardError(`made in epoch ${this.epoch}; take a new view`);
    if (this.#owner === undefined) throw new ClosedError("this view was disposed");
    return this.#array;
  }

  /** Whether the view is still usable (not disposed, not stale). */
  get valid(): boolean {
    return this.#owner !== undefined && this.#owner.epochNow() === this.epoch;
  }

  /** Detaches the buffer and releases the native guard. Idempotent. */
  revoke(stale = false): void {
    const owner = this.#owner;
    if (owner === undefined) return;
    this.#owner = undefined;
    this.#stale = stale;
    // Detach first: after this every typed array over the buffer has length 0.
    this.#buffer.transfer(0);
    owner.forget(this);
    owner.releaseGuard(this.guard);
  }

  [Symbol.dispose](): void {
    this.revoke();
  }
}
