// What the TypeScript wrapper adds to one search: `index.search` against the bare FFI call of
// `qv_index_search` with the same arguments, on a 12-vector index (so the native walk is short
// and the difference is the wrapper's checks, allocations and ids). Best of 15 passes of 200,000
// calls each. A benchmark, not a test (BENCHMARKS.md records what it printed).
//
//   bun bench/wrapper.ts        deno run -A bench/wrapper.ts
import { Index } from "../mod.ts";
import { native } from "../src/runtime/loader.ts";

const d = 96, n = 12, k = 10, calls = 200_000, passes = 15;
const index = new Index({ dimensions: d, metric: "cosine" });
let state = 42;
const vectors = new Float32Array(n * d).map(() => ((state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5);
index.add(BigUint64Array.from({ length: n }, (_, i) => BigInt(i)), vectors);
const query = vectors.subarray(0, d);
// The handle is internal; the bare call needs it.
const handle = (index as unknown as { handleOrThrow(): number }).handleOrThrow();
const keys = new BigUint64Array(k), distances = new Float32Array(k), count = new Uint32Array(1);
const fn = native().fn;
const options = { ef: 10 };

function best(name: string, call: () => void): number {
  let ns = Infinity;
  for (let p = 0; p < passes; p++) {
    const start = performance.now();
    for (let i = 0; i < calls; i++) call();
    ns = Math.min(ns, ((performance.now() - start) * 1e6) / calls);
  }
  console.log(`${name.padEnd(34)} ${ns.toFixed(0).padStart(6)} ns per call`);
  return ns;
}

const bare = best("bare qv_index_search", () => void fn.qv_index_search(handle, 0n, query, d, k, 10, 0, keys, distances, count));
const wrapped = best("index.search(q, 10, { ef: 10 })", () => void index.search(query, k, options));
console.log(`${"the wrapper's share".padEnd(34)} ${(wrapped - bare).toFixed(0).padStart(6)} ns per call`);
index.close();
