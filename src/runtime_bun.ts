/** The Bun adapter: bun:ffi over the generated symbol table. */
import { dlopen, toArrayBuffer, type FFIFunction } from "bun:ffi";
import { symbols } from "./ffi.gen.ts";
import type { Native, SymbolName } from "./native.ts";
import { libraryName } from "./native.ts";
// Embedded into single binaries by `bun build --compile`; a plain path when run from source.
import embeddedLibrary from "../zig-out/lib/libquiver.so" with { type: "file" };
import { existsSync } from "node:fs";
import { join } from "node:path";

const bunTypes = { u32: "u32", i32: "i32", u64: "u64", f32: "f32", usize: "usize", ptr: "ptr", void: "void" } as const;

function libraryPath(): string {
  const override = process.env.QUIVER_LIB;
  if (override) return override;
  const debug = process.env.QUIVER_DEBUG === "1";
  const built = join(import.meta.dir, "..", "zig-out", "lib", libraryName(debug, process.platform));
  if (existsSync(built)) return built;
  // Inside a compiled binary this is a path in Bun's virtual filesystem; dlopen extracts it.
  return embeddedLibrary;
}

export function openBun(): Native {
  const path = libraryPath();
  const table: Record<string, FFIFunction> = {};
  for (const [name, sig] of Object.entries(symbols)) {
    table[name] = { args: sig.args.map((t) => bunTypes[t]), returns: bunTypes[sig.returns] } as FFIFunction;
  }
  const lib = dlopen(path, table);
  return {
    runtime: "bun",
    path,
    fn: lib.symbols as unknown as Native["fn"],
    view(address: bigint, byteLength: number): ArrayBuffer {
      return toArrayBuffer(Number(address), 0, byteLength);
    },
  };
}

export type { SymbolName };
