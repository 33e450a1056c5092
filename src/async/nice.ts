/**
 * Lowers the scheduling priority of the calling thread (Linux `setpriority` on its thread id),
 * so a Worker of the async pool, and the native threads its batch calls start (they inherit
 * it), yield the CPU to the event-loop thread when the cores are all busy. A no-op elsewhere.
 * Imports nothing; opens libc through bun:ffi or Deno.dlopen.
 */

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const specifier = "bun:ffi";
// deno-lint-ignore no-explicit-any
const bunFfi: any = typeof g.Bun !== "undefined" ? await import(specifier) : undefined;

/** Sets this thread's nice value (0 to 19); returns whether it took effect. */
export function niceThisThread(nice: number): boolean {
  if (nice === 0) return true;
  try {
    if (bunFfi) {
      if (g.process.platform !== "linux") return false;
      const ffi = bunFfi;
      const libc = ffi.dlopen("libc.so.6", {
        gettid: { args: [], returns: "i32" },
        setpriority: { args: ["i32", "u32", "i32"], returns: "i32" },
      });
      return libc.symbols.setpriority(0, libc.symbols.gettid(), nice) === 0;
    }
    if (g.Deno?.build?.os !== "linux") return false;
    const libc = g.Deno.dlopen("libc.so.6", {
      gettid: { parameters: [], result: "i32" },
      setpriority: { parameters: ["i32", "u32", "i32"], result: "i32" },
    });
    return libc.symbols.setpriority(0, libc.symbols.gettid(), nice) === 0;
  } catch {
    return false;
  }
}
