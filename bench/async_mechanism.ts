/**
 * Which mechanism should carry the async API? Round-trip cost of one small search (d = 128,
 * 20k vectors, k = 10) by each candidate, in the runtime this runs under:
 *   sync        the plain FFI call, on the JS thread;
 *   workers     the Worker pool of src/async/ (postMessage to a Worker attached to the index);
 *   nonblocking Deno only: the same symbol declared `nonblocking: true` (Deno's blocking pool);
 *   tsfn        a thread-safe callback from a native thread back to the event loop: libc's
 *               pthread_create starting a thread whose start routine is the callback itself
 *               (Bun `JSCallback { threadsafe: true }`, Deno `UnsafeCallback.threadSafe`): the
 *               floor of "a native thread completes through a callback", without the work.
 * Run: bun bench/async_mechanism.ts; deno run -A bench/async_mechanism.ts
 */
import { Index } from "../mod.ts";
import { symbols } from "../src/ffi.gen.ts";
import { native } from "../src/runtime/loader.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const runtime = typeof g.Bun !== "undefined" ? "bun" : "deno";
const d = 128;
const n = 20_000;
const data = new Float32Array(n * d).map(() => Math.random());
const index = new Index({ dimensions: d });
index.add(BigUint64Array.from({ length: n }, (_, i) => BigInt(i)), data, { threads: 2 });
const query = data.slice(0, d);
const rounds = 2000;

async function time(name: string, fn: () => unknown | Promise<unknown>): Promise<void> {
  for (let i = 0; i < 200; i++) await fn();
  const t = performance.now();
  for (let i = 0; i < rounds; i++) await fn();
  const us = ((performance.now() - t) * 1000) / rounds;
  console.log(`${runtime} ${name.padEnd(12)} ${us.toFixed(1)} µs per call (sequential, awaited)`);
}

await time("sync", () => index.search(query, 10));
await time("sync+await", async () => await Promise.resolve(index.search(query, 10)));
await time("workers", () => index.searchAsync(query, 10));
{
  const t = performance.now();
  await Promise.all(Array.from({ length: rounds }, () => index.searchAsync(query, 10)));
  console.log(`${runtime} ${"workers x2000".padEnd(12)} ${(((performance.now() - t) * 1000) / rounds).toFixed(1)} µs per call (all in flight)`);
}

if (runtime === "deno") {
  const sig = symbols.qv_index_search;
  const types: Record<string, string> = { u32: "u32", i32: "i32", u64: "u64", f32: "f32", usize: "usize", ptr: "buffer" };
  const lib = g.Deno.dlopen(native().path, {
    qv_index_search: { parameters: sig.args.map((t: string) => types[t]), result: "i32", nonblocking: true },
  });
  const keys = new BigUint64Array(10);
  const dist = new Float32Array(10);
  const count = new Uint32Array(1);
  await time("nonblocking", () => lib.symbols.qv_index_search(index.handle, 0n, query, d, 10, 0, 0, keys, dist, count));
  lib.close();
}

// The thread-safe callback floor: a new native thread whose start routine is the callback.
const libcPath = "libc.so.6";
if (runtime === "bun") {
  const ffi = await import("bun:ffi");
  const libc = ffi.dlopen(libcPath, {
    pthread_create: { args: ["ptr", "ptr", "ptr", "ptr"], returns: "i32" },
    pthread_detach: { args: ["u64"], returns: "i32" },
  });
  let wake: (() => void) | undefined;
  const cb = new ffi.JSCallback(() => {
    wake?.();
    return null;
  }, { args: ["ptr"], returns: "ptr", threadsafe: true });
  const tid = new BigUint64Array(1);
  await time("tsfn", () => new Promise<void>((resolve) => {
    wake = resolve;
    libc.symbols.pthread_create(tid, null, cb.ptr, null);
    libc.symbols.pthread_detach(tid[0]);
  }));
  await new Promise((r) => setTimeout(r, 100));
  cb.close();
} else {
  const libc = g.Deno.dlopen(libcPath, {
    pthread_create: { parameters: ["buffer", "pointer", "function", "pointer"], result: "i32" },
    pthread_detach: { parameters: ["u64"], result: "i32" },
  });
  let wake: (() => void) | undefined;
  const cb = g.Deno.UnsafeCallback.threadSafe({ parameters: ["pointer"], result: "pointer" }, () => {
    wake?.();
    return null;
  });
  const tid = new BigUint64Array(1);
  await time("tsfn", () => new Promise<void>((resolve) => {
    wake = resolve;
    libc.symbols.pthread_create(tid, null, cb.pointer, null);
    libc.symbols.pthread_detach(tid[0]);
  }));
  await new Promise((r) => setTimeout(r, 100));
  cb.close();
  libc.close();
}
index.close();
