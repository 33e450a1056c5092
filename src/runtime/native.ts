/**
 * The runtime-neutral view of the native library: what every adapter (bun.ts, deno.ts) builds
 * from the generated FFI table and what the rest of Quiver calls. Imports only ../ffi.gen.ts.
 */
import type { symbols } from "../ffi.gen.ts";

/** One exported native function's name. */
export type SymbolName = keyof typeof symbols;

/** The loaded library: its functions, where it came from, and zero-copy views of its memory. */
export interface Native {
  readonly runtime: "bun" | "deno";
  /** The file that was opened. */
  readonly path: string;
  /** Which candidate of the loader it was (e.g. "QUIVER_LIB", "@quiverdb/linux-x64-gnu"). */
  readonly source: string;
  /** Arguments: numbers/bigints for scalars, typed arrays (or null) for pointers. */
  // deno-lint-ignore no-explicit-any
  readonly fn: { readonly [K in SymbolName]: (...args: any[]) => number };
  /**
   * An ArrayBuffer over native memory at `address` (no copy), valid only while the caller keeps
   * that memory alive; revocable with transfer(0). For memory the caller owns (the epoch word).
   */
  view(address: bigint, byteLength: number): ArrayBuffer;
  /**
   * An ArrayBuffer over the memory a native pin (qv_pin_acquire) keeps mapped. With
   * `freesPin`, the runtime itself releases the pin once the buffer's memory is unreachable from
   * JS, wherever the buffer went (Bun: a deallocator; moved and transferred buffers included).
   * Without it the caller must release the pin (Deno: no deallocator exists).
   */
  pinnedView(address: bigint, byteLength: number, pin: bigint): ArrayBuffer;
  readonly freesPin: boolean;
}

/** What an adapter does: open the library at `path` with every symbol of the table. */
export type Opener = (path: string, source: string) => Native;

/** The file name of the library on an OS (Node's `process.platform` names or Deno's). */
export function libraryFileName(os: string, debug = false): string {
  const base = debug ? "quiver-debug" : "quiver";
  if (os === "darwin") return `lib${base}.dylib`;
  if (os === "win32" || os === "windows") return `${base}.dll`;
  return `lib${base}.so`;
}
