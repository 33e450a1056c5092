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
  /** An ArrayBuffer over native memory at `address` (no copy); revocable with transfer(0). */
  view(address: bigint, byteLength: number): ArrayBuffer;
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
