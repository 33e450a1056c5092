/**
 * The runtime-neutral view of the native library. One adapter per runtime (runtime_bun.ts,
 * runtime_deno.ts) builds this from the generated FFI table; nothing else touches bun:ffi or
 * Deno.dlopen.
 */
import { symbols } from "./ffi.gen.ts";

export type Symbols = typeof symbols;
export type SymbolName = keyof Symbols;

/** Arguments as JS values: numbers/bigints for scalars, typed arrays (or null) for pointers. */
export type Arg = number | bigint | ArrayBufferView | null;

export interface Native {
  readonly runtime: "bun" | "deno";
  readonly path: string;
  // deno-lint-ignore no-explicit-any
  readonly fn: { [K in SymbolName]: (...args: any[]) => number };
  /** An ArrayBuffer over native memory at `address` (no copy); revocable with transfer(0). */
  view(address: bigint, byteLength: number): ArrayBuffer;
}

let loaded: Native | undefined;

/** Loads the library once per process (per Worker), picking the adapter for this runtime. */
export async function loadNative(): Promise<Native> {
  if (loaded) return loaded;
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  if (typeof g.Bun !== "undefined") {
    const { openBun } = await import("./runtime_bun.ts");
    loaded = openBun();
  } else if (typeof g.Deno !== "undefined") {
    const { openDeno } = await import("./runtime_deno.ts");
    loaded = openDeno();
  } else {
    throw new Error("Quiver runs on Bun or Deno: no FFI is available in this runtime");
  }
  return loaded;
}

export function native(): Native {
  if (!loaded) throw new Error("Quiver's native library is not loaded: import it from mod.ts");
  return loaded;
}

export const libraryName = (debug: boolean, os: string) => {
  const base = debug ? "quiver-debug" : "quiver";
  if (os === "darwin") return `lib${base}.dylib`;
  if (os === "windows" || os === "win32") return `${base}.dll`;
  return `lib${base}.so`;
};
