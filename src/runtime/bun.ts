/**
 * The Bun adapter: bun:ffi over the generated symbol table, and the library a local build
 * leaves in zig-out/lib as Bun embeds it. Loaded only under Bun (by loader.ts). Imports
 * ../ffi.gen.ts, ./native.ts and ./packages.ts.
 */
import { symbols } from "../ffi.gen.ts";
import type { Native } from "./native.ts";
import { firstLine, type Lookup } from "./packages.ts";

/** The part of bun:ffi this adapter uses (declared here so no bun types leak into Quiver's). */
interface BunFfi {
  dlopen(path: string, table: Record<string, { args: string[]; returns: string }>): {
    symbols: Record<string, ((...args: unknown[]) => number) & { ptr: number }>;
  };
  toArrayBuffer(address: number, offset: number, byteLength: number, context?: number, deallocator?: number): ArrayBuffer;
}

const bunTypes = { u32: "u32", i32: "i32", u64: "u64", f32: "f32", usize: "usize", ptr: "ptr", void: "void" } as const;

// Not a literal: bun:ffi exists only under Bun, and other tools need not resolve it.
const ffiSpecifier = "bun:ffi";
const ffi = (await import(ffiSpecifier)) as BunFfi;

/** Opens the library at `path` (a real path or one in a compiled binary's /$bunfs). */
export function openBun(path: string, source: string): Native {
  const table: Record<string, { args: string[]; returns: string }> = {};
  for (const [name, sig] of Object.entries(symbols)) {
    table[name] = { args: sig.args.map((t) => bunTypes[t]), returns: bunTypes[sig.returns] };
  }
  const lib = ffi.dlopen(path, table);
  const deallocator = lib.symbols.qv_pin_free.ptr;
  return {
    runtime: "bun",
    path,
    source,
    fn: lib.symbols as unknown as Native["fn"],
    view(address: bigint, byteLength: number): ArrayBuffer {
      return ffi.toArrayBuffer(Number(address), 0, byteLength);
    },
    // JSC calls the deallocator (qv_pin_free(bytes, pin)) when the buffer's contents die: after
    // the last buffer holding them, moved or not, is collected or detached.
    pinnedView(address: bigint, byteLength: number, pin: bigint): ArrayBuffer {
      return ffi.toArrayBuffer(Number(address), 0, byteLength, Number(pin), deallocator);
    },
    freesPin: true,
  };
}

/**
 * The local build (zig-out/lib) through Bun's file import: from source it is the file's own
 * path; `bun build --compile` embeds the file and this gives its /$bunfs path; `bun build
 * --outdir` copies it beside the bundle and this gives a path relative to the bundle. The import
 * is dynamic, so a missing build is a caught error, not a failed import of Quiver.
 */
export async function embeddedLocal(os: string): Promise<Lookup> {
  // Inside a try, so that the bundler leaves a missing file to fail here (see packages.ts).
  let module: { default: string };
  try {
    // @ts-ignore: exists after `zig build`
    if (os === "darwin") module = await import("../../zig-out/lib/libquiver.dylib", { with: { type: "file" } });
    // @ts-ignore: exists after `zig build`
    else if (os === "win32") module = await import("../../zig-out/lib/quiver.dll", { with: { type: "file" } });
    // @ts-ignore: exists after `zig build`
    else module = await import("../../zig-out/lib/libquiver.so", { with: { type: "file" } });
  } catch (error) {
    return { missing: `none (${firstLine(error)})` };
  }
  return { path: module.default };
}
