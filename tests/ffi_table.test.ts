/**
 * The FFI table is the single source of truth (native/ffi/exports.zig + native/abi.zig). This spec fails
 * when anything derived from it drifts: the generated src/ffi.gen.ts (compared byte for byte with
 * the generator's output, and field by field with the Zig sources), the symbols the library
 * really exports, the adapter's function table, and the struct layouts asserted in abi.zig.
 */
import { existsSync, readFileSync } from "node:fs";
import "../mod.ts";
import { native } from "../src/runtime/loader.ts";
import { abiVersion, fileFormat, KernelLevel, layouts, Status, statusMessages, symbols } from "../src/ffi.gen.ts";
import { assert, assertEquals, repoPath, runSync, test } from "./harness.ts";

const generator = repoPath("zig-out/bin/quiver-gen-ffi");
const generated = repoPath("src/ffi.gen.ts");

/** The first byte at which `a` and `b` differ, with the line around it; undefined if equal. */
function firstDifference(a: Uint8Array, b: Uint8Array): string | undefined {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  if (i === n && a.length === b.length) return undefined;
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  const line = text(a.subarray(0, i)).split("\n").length;
  const lineOf = (bytes: Uint8Array) => text(bytes).split("\n")[line - 1];
  return `byte ${i} (line ${line}; lengths ${a.length} vs ${b.length}):\n  generator: ${lineOf(a)}\n  file:      ${lineOf(b)}`;
}

/** Names in `want` missing from `have`, and names in `have` not in `want`. */
function nameDrift(want: Iterable<string>, have: Iterable<string>): { missing: string[]; extra: string[] } {
  const w = new Set(want);
  const h = new Set(have);
  return { missing: [...w].filter((x) => !h.has(x)).sort(), extra: [...h].filter((x) => !w.has(x)).sort() };
}

test("ffi table: the generator's output equals src/ffi.gen.ts byte for byte", () => {
  assert(existsSync(generator), `${generator} is missing: run \`zig build\``);
  const run = runSync([generator]);
  assertEquals(run.code, 0, `the generator failed: ${run.stderr}`);
  const file = new Uint8Array(readFileSync(generated));
  const difference = firstDifference(run.stdout, file);
  assertEquals(difference, undefined, "src/ffi.gen.ts drifted from the table (run `zig build gen`, then `zig build`)");
  // Canary: one changed byte is caught, and so is a truncated file.
  const broken = file.slice();
  broken[broken.length >> 1] ^= 1;
  assert(firstDifference(run.stdout, broken) !== undefined, "canary: a changed byte was not caught");
  assert(firstDifference(run.stdout, file.subarray(0, file.length - 1)) !== undefined, "canary: truncation was not caught");
});

test("ffi table: src/ffi.gen.ts agrees with the Zig sources (exports, status codes, messages, struct fields)", () => {
  const ffiZig = readFileSync(repoPath("native/ffi/exports.zig"), "utf8");
  const abiZig = readFileSync(repoPath("native/abi.zig"), "utf8");
  const exportsBody = ffiZig.slice(ffiZig.indexOf("pub const exports = struct {"));
  assert(exportsBody.length > 0, "native/ffi/exports.zig has no `exports` struct");
  const exported = [...exportsBody.matchAll(/pub fn (\w+)\(/g)].map((m) => m[1]);
  assert(exported.length >= 20, `only ${exported.length} exports parsed`);
  assertEquals(Object.keys(symbols), exported, "symbols (and their order) differ from native/ffi/exports.zig");
  for (const [name, sig] of Object.entries(symbols)) {
    const params = exportsBody.match(new RegExp(`pub fn ${name}\\(([^)]*)\\)`))![1];
    const count = params.trim() === "" ? 0 : params.split(",").filter((p) => p.trim() !== "").length;
    assertEquals(sig.args.length, count, `${name}: argument count`);
  }
  assertEquals(abiVersion, Number(ffiZig.match(/pub const abi_version: u32 = (\d+);/)![1]));

  const statusBody = abiZig.match(/pub const Status = enum\(c_int\) \{([^}]*)\}/)![1];
  const statuses = Object.fromEntries([...statusBody.matchAll(/(\w+) = (\d+),/g)].map((m) => [m[1], Number(m[2])]));
  assertEquals(Status, statuses, "Status differs from native/abi.zig");
  for (const [name, code] of Object.entries(Status)) {
    // A message is one string literal or several joined with `++`.
    const message = abiZig.match(new RegExp(`\\.${name} => ((?:"[^"]*"\\s*(?:\\+\\+\\s*)?)+)`));
    assert(message !== null, `no message for ${name} in native/abi.zig`);
    const text = [...message[1].matchAll(/"([^"]*)"/g)].map((m) => m[1]).join("");
    assertEquals(statusMessages[code], text, `message of ${name}`);
  }

  for (const [name, layout] of Object.entries(layouts)) {
    const body = abiZig.match(new RegExp(`pub const ${name} = extern struct \\{([\\s\\S]*?)\\n\\};`))![1];
    const fields = [...body.matchAll(/^\s{4}(\w+): (u32|u64),/gm)].map((m) => [m[1], m[2]]);
    assertEquals(
      Object.entries(layout.fields).map(([field, f]) => [field, f.type]),
      fields,
      `${name}: fields differ from native/abi.zig`,
    );
  }
});

test("ffi table: every table symbol is exported by the library and bound by the adapter, and nothing else is", () => {
  const table = Object.keys(symbols);
  const fn = native().fn as unknown as Record<string, unknown>;
  assertEquals(nameDrift(table, Object.keys(fn)), { missing: [], extra: [] }, "the adapter's function table");
  for (const name of table) assertEquals(typeof fn[name], "function", name);
  // Canary: a symbol dropped from the table shows up as extra.
  assertEquals(nameDrift(table.slice(1), table), { missing: [], extra: [table[0]] });

  // The library's own export list (ELF .dynsym) is exactly the table: no export was left out.
  // (Linux builds only: elsewhere the .so files do not exist and this part is skipped.)
  for (const lib of ["zig-out/lib/libquiver.so", "zig-out/lib/libquiver-debug.so"]) {
    const path = repoPath(lib);
    if (!existsSync(path)) continue;
    const exports = elfExports(new Uint8Array(readFileSync(path))).filter((name) => name.startsWith("qv_"));
    assertEquals(nameDrift(table, exports), { missing: [], extra: [] }, `${lib} exports vs the table`);
  }
});

test("ffi table: every symbol is callable through the adapter with its declared signature", () => {
  const fn = native().fn as unknown as Record<string, (...args: unknown[]) => number>;
  assertEquals(fn.qv_abi_version(), abiVersion);
  const level = fn.qv_kernel_level();
  assert((Object.values(KernelLevel) as number[]).includes(level), `kernel level ${level}`);
  const a = new Float32Array([1, 2, 3]);
  const b = new Float32Array([4, 6, 3]);
  assertEquals(fn.qv_kernel_l2sq(a, b, 3), 25);
  assertEquals(fn.qv_kernel_dot(a, b, 3), 25);
  // The i8 kernels through their coder: close to the f32 values, NaN (never a read past the end)
  // on a buffer too short for its dimensions, typed statuses for bad input.
  // native/kernels/quantize.zig `Coded.bytes`: a line that ends with the terms, then the codes
  // padded to whole granules.
  const codedBytes = 64 + Math.ceil(3 / fileFormat.i8Granule) * fileFormat.i8Granule;
  const ca = new Uint8Array(codedBytes);
  const cb = new Uint8Array(codedBytes);
  const zero = new Float32Array(3);
  assertEquals(fn.qv_kernel_encode_i8(a, zero, 3, 0, ca, ca.length), Status.ok);
  assertEquals(fn.qv_kernel_encode_i8(b, zero, 3, 0, cb, cb.length), Status.ok);
  assert(Math.abs(fn.qv_kernel_l2sq_i8(ca, ca.length, cb, cb.length, 3) - 25) < 0.5, "i8 l2sq of the coded vectors");
  assert(Number.isNaN(fn.qv_kernel_l2sq_i8(ca, codedBytes - 1, cb, cb.length, 3)), "i8 kernel on a short buffer");
  assert(Number.isNaN(fn.qv_kernel_dot_i8(null, 0, cb, cb.length, 3)), "i8 kernel on a null buffer");
  assertEquals(fn.qv_kernel_encode_i8(a, zero, 3, 0, ca, codedBytes - 1), Status.invalid_argument);
  assertEquals(fn.qv_kernel_encode_i8(a, zero, 3, 9, ca, ca.length), Status.unknown_metric);
  assertEquals(fn.qv_kernel_encode_i8(new Float32Array([1, NaN, 2]), zero, 3, 0, ca, ca.length), Status.invalid_vector);
  // A handle that names nothing: every handle-taking call answers invalid_handle (and does not crash).
  const bogus = 0xfffffff0;
  for (const [name, sig] of Object.entries(symbols)) {
    if (sig.args[0] !== "u32" || name.startsWith("qv_kernel")) continue;
    const args = sig.args.map((t, i) => (i === 0 ? bogus : t === "ptr" ? null : t === "u64" || t === "usize" ? 0n : 0));
    assertEquals(fn[name](...args), Status.invalid_handle, `${name} with a bogus handle`);
  }
  // Null options are an invalid argument, not a crash.
  assertEquals(fn.qv_index_create(null, null), Status.invalid_argument);
  assertEquals(fn.qv_index_open(null, 0, null, 0, null), Status.invalid_argument);
});

test("ffi table: generated layouts match the sizes asserted in native/abi.zig, with no padding", () => {
  const abiZig = readFileSync(repoPath("native/abi.zig"), "utf8");
  const asserted = Object.fromEntries([...abiZig.matchAll(/@sizeOf\((\w+)\) == (\d+)/g)].map((m) => [m[1], Number(m[2])]));
  // Every generated layout has a size asserted at comptime in abi.zig, and no other struct does.
  assertEquals(Object.keys(asserted).sort(), Object.keys(layouts).sort(), "the structs whose sizes native/abi.zig asserts");
  for (const [name, layout] of Object.entries(layouts)) {
    assertEquals(layout.size, asserted[name], `${name}.size`);
    let offset = 0;
    for (const [field, f] of Object.entries(layout.fields)) {
      const width = f.type === "u64" ? 8 : 4;
      assertEquals(f.offset, offset, `${name}.${field}: offset (a gap is hidden padding)`);
      assertEquals(f.offset % width, 0, `${name}.${field}: misaligned`);
      offset += width;
    }
    assertEquals(offset, layout.size, `${name}: trailing padding`);
  }
  // The struct sizes the native side writes really are these: a stats call fills exactly 152 bytes.
  const fn = native().fn as unknown as Record<string, (...args: unknown[]) => number>;
  const options = new Uint8Array(layouts.Options.size);
  const view = new DataView(options.buffer);
  view.setUint32(layouts.Options.fields.dimensions.offset, 3, true);
  view.setUint32(layouts.Options.fields.m.offset, 8, true);
  view.setUint32(layouts.Options.fields.ef_construction.offset, 32, true);
  view.setUint32(layouts.Options.fields.ef_search.offset, 16, true);
  const handle = new Uint32Array(1);
  assertEquals(fn.qv_index_create(options, handle), Status.ok);
  try {
    const stats = new Uint8Array(layouts.Stats.size + 16).fill(0xaa);
    assertEquals(fn.qv_index_stats(handle[0], stats), Status.ok);
    assert(stats.subarray(layouts.Stats.size).every((x) => x === 0xaa), "qv_index_stats wrote past 152 bytes");
    const s = new DataView(stats.buffer);
    assertEquals(s.getUint32(layouts.Stats.fields.dimensions.offset, true), 3);
    assertEquals(s.getUint32(layouts.Stats.fields.m.offset, true), 8);
    const report = new Uint8Array(layouts.VerifyReport.size + 16).fill(0xaa);
    assertEquals(fn.qv_index_verify(handle[0], report), Status.ok);
    assert(report.subarray(layouts.VerifyReport.size).every((x) => x === 0xaa), "qv_index_verify wrote past 88 bytes");
    assertEquals(new DataView(report.buffer).getUint32(layouts.VerifyReport.fields.ok.offset, true), 1);
  } finally {
    assertEquals(fn.qv_index_close(handle[0]), Status.ok);
    assertEquals(fn.qv_index_release(handle[0]), Status.ok);
  }
});

/** The names of the defined, global or weak functions in an ELF64 little-endian .dynsym. */
function elfExports(bytes: Uint8Array): string[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  assertEquals([...bytes.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], "not an ELF file");
  assertEquals(bytes[4], 2, "not ELF64");
  assertEquals(bytes[5], 1, "not little-endian");
  const shoff = Number(view.getBigUint64(0x28, true));
  const shentsize = view.getUint16(0x3a, true);
  const shnum = view.getUint16(0x3c, true);
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      type: view.getUint32(at + 4, true),
      offset: Number(view.getBigUint64(at + 0x18, true)),
      size: Number(view.getBigUint64(at + 0x20, true)),
      link: view.getUint32(at + 0x28, true),
      entsize: Number(view.getBigUint64(at + 0x38, true)),
    };
  };
  const names: string[] = [];
  for (let i = 0; i < shnum; i++) {
    const dynsym = section(i);
    if (dynsym.type !== 11) continue; // SHT_DYNSYM
    const strtab = section(dynsym.link);
    for (let at = dynsym.offset; at + 24 <= dynsym.offset + dynsym.size; at += dynsym.entsize) {
      const info = view.getUint8(at + 4);
      const shndx = view.getUint16(at + 6, true);
      const binding = info >> 4;
      if ((info & 0xf) !== 2 || shndx === 0 || (binding !== 1 && binding !== 2)) continue; // FUNC, defined, GLOBAL/WEAK
      const start = strtab.offset + view.getUint32(at, true);
      let end = start;
      while (bytes[end] !== 0) end++;
      names.push(new TextDecoder().decode(bytes.subarray(start, end)));
    }
  }
  assert(names.length > 0, "no .dynsym functions found");
  return names;
}
