/**
 * The Deno adapter: Deno.dlopen over the generated symbol table. Loaded only under Deno (by
 * loader.ts). Imports ../ffi.gen.ts and ./native.ts.
 */
import { symbols } from "../ffi.gen.ts";
import type { Native } from "./native.ts";

/** The part of Deno's FFI this adapter uses (declared here so Quiver's types need no Deno's). */
interface DenoFfi {
  dlopen(path: string, table: Record<string, { parameters: string[]; result: string }>): {
    symbols: Record<string, (...args: unknown[]) => number>;
  };
  UnsafePointer: { create(address: bigint): unknown };
  UnsafePointerView: new (pointer: unknown) => { getArrayBuffer(byteLength: number): ArrayBuffer };
}

const denoTypes = { u32: "u32", i32: "i32", u64: "u64", f32: "f32", usize: "usize", ptr: "buffer", void: "void" } as const;

/** Opens the library at `path` (needs --allow-ffi). */
export function openDeno(path: string, source: string): Native {
  const deno = (globalThis as unknown as { Deno: DenoFfi }).Deno;
  const table: Record<string, { parameters: string[]; result: string }> = {};
  for (const [name, sig] of Object.entries(symbols)) {
    const result: string = denoTypes[sig.returns];
    // A pointer result is a "pointer" (an opaque object); only parameters can be buffers.
    table[name] = { parameters: sig.args.map((t) => denoTypes[t]), result: result === "buffer" ? "pointer" : result };
  }
  const lib = deno.dlopen(path, table);
  return {
    runtime: "deno",
    path,
    source,
    fn: lib.symbols as unknown as Native["fn"],
    view(address: bigint, byteLength: number): ArrayBuffer {
      const pointer = deno.UnsafePointer.create(address);
      if (pointer === null) throw new Error("null pointer from the native library");
      return new deno.UnsafePointerView(pointer).getArrayBuffer(byteLength);
    },
    // Deno's buffers over foreign memory have no deallocator: view.ts releases the pin itself.
    pinnedView(address: bigint, byteLength: number): ArrayBuffer {
      const pointer = deno.UnsafePointer.create(address);
      if (pointer === null) throw new Error("null pointer from the native library");
      return new deno.UnsafePointerView(pointer).getArrayBuffer(byteLength);
    },
    freesPin: false,
  };
}
