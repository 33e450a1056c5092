/**
 * The address of a typed array's memory, so a Worker of the pool can read a large input in
 * place instead of the main thread copying it (a 100 MB copy is a 100 ms stall). Imports
 * nothing; uses bun:ffi's `ptr` under Bun and `Deno.UnsafePointer` under Deno.
 */

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const specifier = "bun:ffi";
const bunPtr: ((view: ArrayBufferView) => number) | undefined = typeof g.Bun !== "undefined"
  ? ((await import(specifier)) as { ptr: (view: ArrayBufferView) => number }).ptr
  : undefined;

/** The address of `view`'s first byte, as a decimal string (it crosses postMessage). */
export function addressOf(view: ArrayBufferView): string {
  if (view.byteLength === 0) throw new RangeError("no address for an empty array");
  if (bunPtr) return String(bunPtr(view));
  const pointer = g.Deno.UnsafePointer.of(view);
  return String(g.Deno.UnsafePointer.value(pointer));
}
