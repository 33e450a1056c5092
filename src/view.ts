/**
 * Zero-copy views of stored vectors, tied to the mapping epoch they were made in.
 *
 * A view's ArrayBuffer owns a native pin (qv_pin_acquire): a guard on the mapping it points into
 * and a reference on the index, so that memory stays mapped, however the storage grows and
 * whoever closes or collects the Index, for as long as the buffer can reach it:
 * - Bun: the buffer's deallocator releases the pin when its memory dies, wherever it went
 *   (kept arrays, `transfer()`, structuredClone or postMessage with transfer).
 * - Deno has no deallocator: the pin is released when the wrapper detaches the buffer
 *   (`transfer(0)`: dispose, close, a remap it notices), or by the collector once both the
 *   view and its `array` are unreachable (the buffer is detached first). A buffer the caller
 *   moved out can be reached from where it went, which nothing can observe: its pin is never
 *   released, so its mapping and the index's files stay until the process ends.
 * Views are copies where a zero-copy array would be unsafe: of a read-only index (its mappings
 * are read-only memory, where one write would be SIGSEGV), and in Deno Workers (a terminated
 * Worker runs no finalizer, so its pins would stay forever and compact() be Busy forever; Bun
 * frees a terminated Worker's buffers, and their pins, through the deallocator).
 */
import { native } from "./runtime/loader.ts";
import { ClosedError, StaleGuardError } from "./errors.ts";

export interface ViewOwner {
  /** The current mapping epoch (a cheap read of native memory). */
  epochNow(): bigint;
  forget(view: VectorView): void;
}

/**
 * Releases `pin` if the caller did not move `buffer` out: detaches it first, so nothing in JS
 * reaches the memory once it may be unmapped. A moved buffer keeps its pin (see above).
 */
function releasePin(pin: bigint, buffer: ArrayBuffer): void {
  if (buffer.detached) return;
  buffer.transfer(0);
  // Under Bun the detach may already have run the deallocator, which released the pin; the
  // second release then finds nothing (ids are never reused), which is not an error.
  native().fn.qv_pin_release(pin);
}

/** Deno's leak backstop: the view and its array were both collected (see the file comment). */
interface Held {
  pin: bigint;
  buffer: ArrayBuffer;
  alive: number;
}
const collector = new FinalizationRegistry<Held>((held) => {
  held.alive -= 1;
  if (held.alive === 0) releasePin(held.pin, held.buffer);
});

export class VectorView {
  #owner: ViewOwner | undefined;
  #stale = false;
  #buffer: ArrayBuffer;
  #array: Float32Array;
  /** The native pin of a zero-copy view; 0n for a copy. */
  readonly #pin: bigint;
  readonly #held: Held | undefined;
  /** The mapping epoch this view was made in. */
  readonly epoch: bigint;
  /**
   * Whether `array` is a private copy (views of a read-only index, views in Deno Workers)
   * rather than the stored memory itself. Writes to a copy change only the copy.
   */
  readonly copy: boolean;

  /**
   * @internal With `pin` owning the memory at `address`; or, for a copy (`pin` 0n), `copied`:
   * the vector the native side copied out (qv_view_copy).
   */
  constructor(owner: ViewOwner, address: bigint, pin: bigint, epoch: bigint, dimensions: number, copied?: Float32Array) {
    this.#owner = owner;
    this.epoch = epoch;
    this.#pin = pin;
    this.copy = pin === 0n;
    const bytes = dimensions * 4;
    if (this.copy) {
      if (copied === undefined || copied.length !== dimensions) throw new Error("internal: a copy view needs its copied vector");
      this.#buffer = copied.buffer as ArrayBuffer;
      this.#array = copied;
      return;
    }
    this.#buffer = native().pinnedView(address, bytes, pin);
    this.#array = new Float32Array(this.#buffer);
    if (!native().freesPin) {
      this.#held = { pin, buffer: this.#buffer, alive: 2 };
      collector.register(this, this.#held, this);
      collector.register(this.#array, this.#held, this.#held);
    }
  }

  /**
   * The stored vector, without a copy (unless `copy`). Throws StaleGuardError
   * once this wrapper saw the storage remapped and ClosedError once the view was disposed.
   * Reading and writing it from several threads is racy: treat it as read-only (see README,
   * "Views"). Cost: O(1).
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

  /**
   * Detaches the buffer (kept arrays then have length 0) and releases the pin, unless the
   * caller moved the buffer out (then its memory stays mapped; see the file comment). A copy
   * is left as it is. Idempotent; never throws.
   */
  revoke(stale = false): void {
    const owner = this.#owner;
    if (owner === undefined) return;
    this.#owner = undefined;
    this.#stale = stale;
    owner.forget(this);
    if (this.copy) return;
    if (this.#held !== undefined) {
      collector.unregister(this);
      collector.unregister(this.#held);
    }
    releasePin(this.#pin, this.#buffer);
  }

  [Symbol.dispose](): void {
    this.revoke();
  }
}
