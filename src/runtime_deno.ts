/** The Deno adapter: Deno.dlopen over the generated symbol table. */
import { symbols } from "./ffi.gen.ts";
import type { Native } from "./native.ts";
import { libraryName } from "./native.ts";

const denoTypes = { u32: "u32", i32: "i32", u64: "u64", f32: "f32", usize: "usize", ptr: "buffer", void: "void" } as const;

function libraryPath(): string {
  const override = Deno.env.get("QUIVER_LIB");
  if (override) return override;
  const debug = Deno.env.get("QUIVER_DEBUG") === "1";
  return new URL(`../zig-out/lib/${libraryName(debug, Deno.build.os)}`, import.meta.url).pathname;
}

export function openDeno(): Native {
  const path = libraryPath();
  const table: Record<string, Deno.ForeignFunction> = {};
  for (const [name, sig] of Object.entries(symbols)) {
    table[name] = {
      parameters: sig.args.map((t) => denoTypes[t]),
      result: denoTypes[sig.returns] === "buffer" ? "pointer" : denoTypes[sig.returns],
    } as Deno.ForeignFunction;
  }
  const lib = Deno.dlopen(path, table);
  return {
    runtime: "deno",
    path,
    fn: lib.symbols as unknown as Native["fn"],
    view(address: bigint, byteLength: number): ArrayBuffer {
      const pointer = Deno.UnsafePointer.create(address);
      if (pointer === null) throw new Error("null pointer from the native library");
      return new Deno.UnsafePointerView(pointer).getArrayBuffer(byteLength);
    },
  };
}
